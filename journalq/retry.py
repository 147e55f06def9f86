"""Which failures are worth another attempt, and how long to wait first.

:func:`classify` sorts an exception into one of two kinds. A
``"transient"`` failure may not happen again on the same request: a reset
connection, a timeout, a busy resource. A ``"permanent"`` one repeats until
someone changes something: a missing file, a denied permission, a full or
read-only disk, an invalid request. The executor retries transient
failures with :class:`Backoff` and fails the action at once on permanent
ones.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from journalq.errors import ActionError

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "Backoff",
    "Classification",
    "classify",
    "register_transient",
]

Classification = Literal["transient", "permanent"]

#: Attempts per action, the first one included. The same default as
#: ``QueueCreated.max_attempts`` in the journal records.
DEFAULT_MAX_ATTEMPTS: Final = 5

#: Error numbers of failures that a later attempt can outlive: the resource
#: was busy or interrupted, the network dropped the request, or the device
#: reported an I/O error. EIO on NFS, FUSE and network block devices is
#: often a lost connection, and a failing local disk keeps failing until the
#: attempt limit is used up.
TRANSIENT_ERRNOS: Final = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.EIO,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.EPIPE,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.ENETRESET,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ESTALE,
    }
)

#: Exception types that a retry never fixes. ``OSError`` subclasses here are
#: matched before :data:`TRANSIENT_ERRNOS` is consulted.
PERMANENT_TYPES: Final = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
    ValueError,
    ActionError,
)

#: Exception types that are always worth another attempt.
TRANSIENT_TYPES: Final = (ConnectionError, TimeoutError)

_transient_predicates: list[Callable[[BaseException], bool]] = []


def register_transient(predicate: Callable[[BaseException], bool]) -> None:
    """Count every exception that ``predicate`` accepts as transient.

    Backends register their throttling and server errors (S3 ``SlowDown``,
    HTTP 503) this way. Registered predicates are asked before the built-in
    rules, so they can also reclassify an error the rules call permanent.
    """
    _transient_predicates.append(predicate)


def classify(exc: BaseException) -> Classification:
    """Return whether ``exc`` is worth another attempt.

    The first matching rule decides:

    1. a registered predicate accepts it: transient;
    2. an instance of :data:`PERMANENT_TYPES`: permanent;
    3. an instance of :data:`TRANSIENT_TYPES`: transient;
    4. an ``OSError`` whose errno is in :data:`TRANSIENT_ERRNOS`: transient;
    5. an ``OSError`` without an errno: transient, because backends raise
       those for failed requests they did not classify, and the attempt
       limit bounds the cost of a wrong guess;
    6. anything else: permanent. That covers every other errno (ENOSPC,
       EROFS, EDQUOT, ENAMETOOLONG...) and every other exception, which is
       most likely a bug that a retry would only repeat.
    """
    if any(predicate(exc) for predicate in _transient_predicates):
        return "transient"
    if isinstance(exc, PERMANENT_TYPES):
        return "permanent"
    if isinstance(exc, TRANSIENT_TYPES):
        return "transient"
    if isinstance(exc, OSError) and (
        exc.errno is None or exc.errno in TRANSIENT_ERRNOS
    ):
        return "transient"
    return "permanent"


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter.

    The delay before retry ``n`` (1 for the first retry) is drawn uniformly
    from ``[0, min(cap, base * 2 ** (n - 1))]``. Drawing from the whole
    range, not around the exponential value, spreads the retries of workers
    that failed together, so they do not hit a throttled server in step.
    The defaults: 0.1 s is an estimate of one request round trip to a cloud
    object store, so a dropped connection is retried almost at once. The 10 s cap is
    reached at the eighth retry, so :data:`DEFAULT_MAX_ATTEMPTS` attempts wait
    at most 1.5 s in total, and a queue configured with more attempts still
    waits no more than 10 s per retry.
    """

    base: float = 0.1
    cap: float = 10.0
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def seeded(cls, seed: int, base: float = 0.1, cap: float = 10.0) -> Backoff:
        """Create a backoff whose delays repeat for the same ``seed``."""
        return cls(base=base, cap=cap, rng=random.Random(seed))

    def ceiling(self, attempt: int) -> float:
        """Return the largest delay, in seconds, before retry ``attempt``."""
        if attempt < 1:
            raise ValueError(f"retry number {attempt} is invalid; it starts at 1")
        # Clamping the exponent keeps 2.0 ** exponent from overflowing a float
        # for very large attempt numbers.
        exponent = min(attempt - 1, 64)
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, attempt: int) -> float:
        """Return a random delay, in seconds, to sleep before retry ``attempt``."""
        return self.rng.uniform(0.0, self.ceiling(attempt))
