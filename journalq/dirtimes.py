"""Directory mtimes: giving destination directories their source's, as rsync -a.

Creating, renaming or deleting an entry in a directory sets the
directory's mtime to the time of the change, so after a copy every
destination directory would carry the time of the run. A tree's listing
journals the mtimes of its source directories in its ``expanded`` record
(see :func:`journalq.plan.directory_mtimes_to_set`). The run that ends
the tree sets them, deepest first, because creating a directory changes
its parent's mtime and setting one does not. They are set before the
tree's ending is journaled, so after a run killed in between, the next
run sets them when it ends the tree.

Only destinations that have directories with settable times take part:
the local disk and SFTP (through ``utime``, in whole seconds with SFTP
version 3). Object stores have no directories. A directory whose mtime
cannot be set is logged as a warning and fails nothing, because the
files are all there.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Mapping

from journalq import compare, digest, transfer
from journalq.backends import Filesystem
from journalq.plan import same_mtime

__all__ = ["can_set", "set_directory_mtimes"]

logger = logging.getLogger(__name__)


def can_set(destination: Filesystem) -> bool:
    """Tell whether ``destination`` can set the mtime of its directories.

    Besides the local disk, that is a filesystem with ``set_mtime``:
    journalq's SFTP filesystem, through asyncssh's ``utime``. sshfs itself
    offers only ``touch``, which sets the current time.
    """
    return destination.local or callable(getattr(destination.fs, "set_mtime", None))


def set_directory_mtimes(
    destination: Filesystem, root: str, mtimes: Mapping[str, int]
) -> int:
    """Give each directory under ``root`` its mtime in ``mtimes``, deepest first.

    ``mtimes`` maps a path relative to ``root`` (``""`` for ``root``) to a
    time in nanoseconds. A directory that already has it is left alone.
    Returns how many directories were changed. Failures are logged, once
    per call with their count, and not raised. A missing directory is
    skipped.
    """
    changed = 0
    failures: list[tuple[str, OSError]] = []
    for relpath in sorted(mtimes, key=_deepest_first):
        path = posixpath.join(root, relpath) if relpath else root
        try:
            if _set_mtime(destination, path, mtimes[relpath]):
                changed += 1
        except FileNotFoundError:
            # Nothing was made there: the failures of its mkdir or of its
            # files are reported already.
            logger.debug("no directory %s to set the mtime of", path)
        except OSError as exc:
            failures.append((path, exc))
    if failures:
        path, exc = failures[0]
        logger.warning(
            "could not set the mtime of %d of the %d directories under %s to "
            "their source's; the files are copied. First failure: %s: %s",
            len(failures),
            len(mtimes),
            destination.url_of(root),
            destination.url_of(path),
            exc,
        )
    if changed and destination.local:
        # The tree's ending is journaled as durable next, so one sync of
        # the filesystem makes these mtimes durable first.
        transfer.sync_filesystem(digest.local_path(root))
    return changed


def _deepest_first(relpath: str) -> tuple[bool, int, str]:
    # The root ("") goes last, after the top-level directories.
    return (relpath == "", -relpath.count("/"), relpath)


def _set_mtime(destination: Filesystem, path: str, mtime_ns: int) -> bool:
    """Set the mtime of the directory ``path``; return whether it changed."""
    if destination.local:
        local = digest.local_path(path)
        info = os.stat(local)
        if same_mtime(mtime_ns, info.st_mtime_ns):
            return False
        os.utime(local, ns=(info.st_atime_ns, mtime_ns))
        return True
    fs = destination.fs
    current_ns = compare.mtime_from_info({"mtime": fs.info(path).get("mtime")})
    if same_mtime(mtime_ns, current_ns):
        return False
    fs.set_mtime(path, mtime_ns)
    return True
