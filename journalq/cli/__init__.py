"""The ``journalq`` command line; ``main`` is the console script."""

from journalq.cli.main import cli, main

__all__ = ["cli", "main"]
