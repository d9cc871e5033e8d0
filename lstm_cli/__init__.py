"""lstm-digits: a from-scratch TensorFlow LSTM on the 8x8 digits, run by Hydra, in MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lstm-digits")  # pyproject.toml is the one place of the version
except PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "0+unknown"
