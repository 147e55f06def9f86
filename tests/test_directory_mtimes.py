"""Which source directory mtimes a tree's listing journals for its end to set.

``tests/cli/test_cli_directory_mtimes.py`` tests the behaviour end to
end, on real trees through the command line. These are the cases of the
planning rule that are cheaper to state as listings.
"""

from __future__ import annotations

from journalq.plan import Listing, directory_mtimes_to_set, same_mtime

SECOND = 1_000_000_000
SOURCE = Listing(directory_mtimes={"": 5 * SECOND, "a": 6 * SECOND, "a/b": 7 * SECOND})


def test_unchanged_tree_sets_nothing() -> None:
    destination = Listing(directory_mtimes=dict(SOURCE.directory_mtimes))

    assert directory_mtimes_to_set(SOURCE, destination, changes=False) == {}


def test_one_changed_directory_sets_all() -> None:
    mtimes = dict(SOURCE.directory_mtimes, a=9 * SECOND)
    destination = Listing(directory_mtimes=mtimes)

    result = directory_mtimes_to_set(SOURCE, destination, changes=False)

    assert result == SOURCE.directory_mtimes


def test_missing_directory_sets_all() -> None:
    mtimes = dict(SOURCE.directory_mtimes)
    del mtimes["a/b"]
    destination = Listing(directory_mtimes=mtimes)

    result = directory_mtimes_to_set(SOURCE, destination, changes=False)

    assert result == SOURCE.directory_mtimes


def test_changes_set_all_without_destination() -> None:
    assert directory_mtimes_to_set(SOURCE, None, changes=True) == (
        SOURCE.directory_mtimes
    )


def test_unlisted_and_unsafe_left_out() -> None:
    source = Listing(
        directory_mtimes={"": SECOND, "ok": SECOND, "locked": SECOND, "..": SECOND},
        unlisted={"locked": "Permission denied"},
    )

    result = directory_mtimes_to_set(source, None, changes=True)

    assert result == {"": SECOND, "ok": SECOND}


def test_same_mtime_accepts_whole_seconds() -> None:
    assert same_mtime(5 * SECOND + 123, 5 * SECOND + 123)
    assert same_mtime(5 * SECOND + 123, 5 * SECOND)
    assert not same_mtime(5 * SECOND + 123, 5 * SECOND + 100)
    assert not same_mtime(5 * SECOND + 123, 6 * SECOND)
    assert not same_mtime(5 * SECOND, None)
