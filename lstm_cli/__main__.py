"""`python -m lstm_cli ...`: the same as the `lstm-digits` command."""

from lstm_cli.commands.app import main

main()
