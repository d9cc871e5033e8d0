"""The fit: the training loop (`loop`), the compiled epoch and Adam (`trainer`), and the
hooks that do everything else (`hooks`). Knows no MLflow and no Hydra: may import the
networks, the data, `config.choices` and the runtime."""
