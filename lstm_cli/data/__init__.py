"""The data: scikit-learn's digits, split and read as sequences. NumPy and scikit-learn only."""
