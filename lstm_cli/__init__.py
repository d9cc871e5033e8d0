"""lstm-digits: a from-scratch TensorFlow LSTM on the 8x8 digits, run by Hydra, in MLflow."""

__version__ = "0.1.0"
