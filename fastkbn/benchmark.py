"""Placeholder: the `fastkbn bench` subcommand is being written."""


def add_parser(sub):
    """Register the subcommand on the CLI's subparsers."""
