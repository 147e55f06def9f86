"""Benchmarks of journalq against the peer transfer tools, run side by side.

``python -m benchmarks`` runs them and writes the results page; see
``benchmarks/README.md`` for how to run them and what each figure means.
"""
