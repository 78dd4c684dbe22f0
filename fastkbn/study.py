"""Placeholder: the `fastkbn study` subcommand is being written."""


def add_parser(sub):
    """Register the subcommand on the CLI's subparsers."""
