"""The commands: one module per command (parsing, help, exit codes, and what it asks of the
layers below); `app` registers them. May import every layer below and beside it."""
