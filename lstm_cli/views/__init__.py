"""What the user sees: the terminal (`console`, `tables`: rich) and the figures (`figures`:
matplotlib). Plain values in; imports no layer of the package but the runtime and the data."""
