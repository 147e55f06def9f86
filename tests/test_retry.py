"""Tests for journalq.retry: failure classification and backoff delays."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalq import retry
from journalq.errors import ActionError, CorruptionError


@pytest.fixture
def restore_predicates():
    saved = list(retry._transient_predicates)
    yield
    retry._transient_predicates[:] = saved


def os_error(code: int) -> OSError:
    return OSError(code, "failed", "/some/path")


CASES = [
    (FileNotFoundError(errno.ENOENT, "missing", "/a"), "permanent"),
    (PermissionError(errno.EACCES, "denied", "/a"), "permanent"),
    (IsADirectoryError(errno.EISDIR, "directory", "/a"), "permanent"),
    (NotADirectoryError(errno.ENOTDIR, "not a directory", "/a"), "permanent"),
    (FileExistsError(errno.EEXIST, "exists", "/a"), "permanent"),
    (ValueError("bad value"), "permanent"),
    (ActionError("x", "invalid"), "permanent"),
    (os_error(errno.ENOSPC), "permanent"),
    (os_error(errno.EROFS), "permanent"),
    (os_error(errno.EDQUOT), "permanent"),
    (os_error(errno.ENAMETOOLONG), "permanent"),
    (os_error(errno.EINVAL), "permanent"),
    (CorruptionError("/q/journal", 10, "bad crc"), "permanent"),
    (RuntimeError("a bug"), "permanent"),
    (KeyError("a bug"), "permanent"),
    (KeyboardInterrupt(), "permanent"),
    (ConnectionError("lost"), "transient"),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "transient"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "transient"),
    (BrokenPipeError(errno.EPIPE, "broken pipe"), "transient"),
    (TimeoutError("timed out"), "transient"),
    (os_error(errno.EAGAIN), "transient"),
    (os_error(errno.EBUSY), "transient"),
    (os_error(errno.ETIMEDOUT), "transient"),
    (os_error(errno.ECONNRESET), "transient"),
    (os_error(errno.EIO), "transient"),
    (os_error(errno.EINTR), "transient"),
    (os_error(errno.ESTALE), "transient"),
    (os_error(errno.ENETUNREACH), "transient"),
    (OSError("request failed without an errno"), "transient"),
]


@pytest.mark.parametrize(
    ("exc", "expected"), CASES, ids=[repr(exc)[:40] for exc, _ in CASES]
)
def test_classify_table(exc, expected):
    assert retry.classify(exc) == expected


def test_oserror_errno_maps_to_subclass_first():
    # OSError(ENOENT, ...) builds a FileNotFoundError, so the type rule wins.
    assert retry.classify(os_error(errno.ENOENT)) == "permanent"
    assert retry.classify(os_error(errno.EACCES)) == "permanent"


@pytest.mark.usefixtures("restore_predicates")
def test_register_transient_adds_rule():
    class SlowDownError(Exception):
        pass

    assert retry.classify(SlowDownError()) == "permanent"
    retry.register_transient(lambda exc: isinstance(exc, SlowDownError))
    assert retry.classify(SlowDownError()) == "transient"
    assert retry.classify(RuntimeError()) == "permanent"


@pytest.mark.usefixtures("restore_predicates")
def test_register_transient_overrides_permanent():
    def is_throttled(exc: BaseException) -> bool:
        return isinstance(exc, PermissionError) and "503" in str(exc)

    retry.register_transient(is_throttled)
    assert retry.classify(PermissionError("HTTP 503 Slow Down")) == "transient"
    assert retry.classify(PermissionError("HTTP 403 Forbidden")) == "permanent"


def test_default_max_attempts():
    assert retry.DEFAULT_MAX_ATTEMPTS == 5


def test_backoff_ceiling_doubles_then_caps():
    backoff = retry.Backoff()
    ceilings = [backoff.ceiling(attempt) for attempt in range(1, 10)]
    assert ceilings[:7] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4])
    assert ceilings[7:] == [10.0, 10.0]


def test_backoff_ceiling_huge_attempt():
    assert retry.Backoff().ceiling(10_000) == 10.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_rejects_attempt_below_one(attempt):
    with pytest.raises(ValueError, match="starts at 1"):
        retry.Backoff().delay(attempt)


@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_backoff_delay_within_bounds(attempt, seed):
    backoff = retry.Backoff.seeded(seed)
    delay = backoff.delay(attempt)
    assert delay >= 0.0
    assert delay <= min(10.0, 0.1 * 2 ** (attempt - 1))


def test_backoff_seeded_repeats():
    first = retry.Backoff.seeded(42)
    second = retry.Backoff.seeded(42)
    delays = [first.delay(attempt) for attempt in range(1, 8)]
    assert delays == [second.delay(attempt) for attempt in range(1, 8)]


def test_backoff_jitter_spreads_delays():
    backoff = retry.Backoff.seeded(7)
    delays = [backoff.delay(6) for _ in range(1000)]
    # Full jitter draws from the whole range [0, 3.2]: both halves occur.
    assert min(delays) < 0.5
    assert max(delays) > 2.7
    assert len(set(delays)) == 1000


def test_backoff_custom_base_and_cap():
    backoff = retry.Backoff.seeded(1, base=1.0, cap=4.0)
    assert backoff.ceiling(1) == 1.0
    assert backoff.ceiling(3) == 4.0
    assert backoff.ceiling(4) == 4.0
