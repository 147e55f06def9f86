"""``python -m journalq``: the ``journalq`` command line."""

from journalq.cli import main

main()
