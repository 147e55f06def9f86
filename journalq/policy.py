"""The compare policies: how an existing destination file is judged identical.

Kept apart from :mod:`journalq.compare`, which imports fsspec, so that the
command line can list the policy names in its options without importing
it. :mod:`journalq.compare` re-exports :class:`Policy`.
"""

from __future__ import annotations

import enum

from journalq.errors import ActionError

__all__ = ["Policy"]


class Policy(enum.StrEnum):
    """Rule that judges an existing destination identical to its source."""

    CHECKSUM = "checksum"
    SIZE = "size"
    SIZE_MTIME = "size+mtime"
    ALWAYS = "always"

    @classmethod
    def parse(cls, text: str) -> Policy:
        """Return the policy named ``text``; raises ``ActionError`` if none is."""
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(policy.value for policy in cls)
            raise ActionError(
                text, f"invalid compare policy; expected one of: {names}"
            ) from None
