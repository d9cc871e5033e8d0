"""The networks: the recurrent cells, the model around them, the fused kernel, what a trained
network learned. TensorFlow and NumPy; imports no other layer but `config.choices` and the
runtime's hardware and errors."""
