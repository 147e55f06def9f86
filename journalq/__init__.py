"""journalq: a crash-safe transfer queue for fsspec filesystems."""
