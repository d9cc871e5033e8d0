"""The process runtime: start-up and imports, signals, errors and masking, the worker cache, and
every use of a library's internals (`internals`). Imports no layer of the package."""
