"""Journal records: the on-disk vocabulary of a queue.

Every record is a frozen :class:`msgspec.Struct` encoded as a MessagePack
array whose first element is an explicit integer tag. Tags, not class names,
identify a record on disk, so classes can be renamed freely. One frame of the
journal contains a MessagePack array of records (see :mod:`journalq.journal`).

Schema evolution rules, which every change to this module must follow:

* A new field goes at the end of its record and has a default, so older
  journals still decode and older readers ignore nothing they need.
* A field is never removed, reordered or given another type. Retire one by
  leaving it in place with its default.
* A new record type gets a new tag. Older readers cannot skip an unknown tag
  (msgspec raises ``ValidationError`` for it), so a new type is only written
  after :data:`FORMAT_MINOR` is raised and a reader refuses a journal whose
  minor version is newer than its own.
* Any other change raises :data:`FORMAT_MAJOR`; old formats keep a reader.

Paths are stored as structured fields, never as command strings. An
:class:`Endpoint` never contains a secret: a URL's password is moved into
the options, and the value of each secret option (keys, secrets, tokens,
passwords, at any depth of a value) is replaced by a placeholder before a
record is built (see :mod:`journalq.backends.options`).
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

#: Raised when the meaning of an existing record changes.
FORMAT_MAJOR: Final = 1
#: Raised when a record type is added.
FORMAT_MINOR: Final = 3


class Kind(enum.StrEnum):
    """What an action does."""

    COPY_FILE = "copy_file"
    COPY_TREE = "copy_tree"
    SYNC = "sync"
    MKDIR = "mkdir"
    DELETE = "delete"
    LIST = "list"


class Service(enum.StrEnum):
    """Which filesystem of the queue an action addresses."""

    SOURCE = "source"
    DESTINATION = "destination"


class Outcome(enum.StrEnum):
    """How a completed action ended."""

    #: Bytes were written to the destination.
    COPIED = "copied"
    #: The destination was already identical; nothing was written.
    SKIPPED = "skipped"
    #: A non-copy action (mkdir, delete, list, tree expansion) took effect.
    DONE = "done"


# gc=False keeps records out of the cyclic garbage collector, which made
# decoding 500,000 of them 2.7x faster (msgspec 0.23, CPython 3.11, 2-core
# development VM). It is safe because a frozen record refers only to
# strings, numbers, tuples, endpoints and identities, none of which can
# refer back to it.
class _Record(msgspec.Struct, frozen=True, array_like=True, tag_field="k", gc=False):
    pass


class Endpoint(msgspec.Struct, frozen=True, array_like=True):
    """A filesystem of the queue: an fsspec URL and options, secrets removed."""

    url: str
    options: dict[str, str] = {}


class Identity(
    msgspec.Struct, frozen=True, array_like=True, omit_defaults=True, gc=False
):
    """What was known about one file when a decision was made.

    ``digest`` is ``"<algorithm>:<hex>"``, for example ``"xxh128:9f..."``.
    """

    size: int
    mtime_ns: int | None = None
    digest: str | None = None
    etag: str | None = None


class QueueCreated(_Record, tag=1):
    """The first record of every queue."""

    queue_id: str
    name: str
    source: Endpoint
    destination: Endpoint
    parallelism: int
    created_ns: int
    compare: str = "checksum"
    max_attempts: int = 5


class ActionAdded(_Record, tag=2):
    """An action entered the queue.

    A top-level action stores its own ``source`` and ``destination`` paths,
    already resolved by the copy-into/copy-as rules. A file found by
    expanding a tree (``parent`` set) stores only ``relpath``: its paths are
    the parent's paths joined with it, which keeps a million-file queue small.
    ``key`` identifies the request: adding the same request again while an
    earlier one with the key is still pending adds nothing.
    ``in_the_way`` marks a delete of a sync whose item is where the source
    has an item of the other type (a file where a directory goes, or the
    reverse), so the delete runs before the tree's mkdirs and copies.
    ``redecided`` marks a file that the tree's listing skipped as identical
    and that a run with a stricter compare policy added back, to compare it
    again; it takes one file from the tree's ``skipped`` count.
    ``listed`` is what a sync's listing found of a file it deletes (size,
    mtime, ETag), so the delete fails as a conflict once the file changed.
    """

    action_id: str
    kind: Kind
    key: str
    source: str | None = None
    destination: str | None = None
    service: Service | None = None
    parent: str | None = None
    relpath: str | None = None
    depends_on: tuple[str, ...] = ()
    size: int | None = None
    recursive: bool = False
    dir_only: bool = False
    delete_extraneous: bool = False
    compare: str | None = None
    added_ns: int = 0
    in_the_way: bool = False
    redecided: bool = False
    listed: Identity | None = None


class Expanded(_Record, tag=3):
    """A copy_tree or sync finished adding its children.

    ``skipped`` files were already identical at the destination when the
    tree was listed, decided by ``method``; they get no action of their own.
    ``directory_mtimes`` are the mtimes in nanoseconds of the source's
    directories, by path relative to the tree (``""`` is its root), that
    the run which ends the tree gives the destination's directories. It is
    empty where the destination cannot set them, and when the listing
    found nothing to change.
    """

    action_id: str
    children: int
    listing_digest: str
    skipped: int = 0
    method: str = ""
    directory_mtimes: dict[str, int] = {}


class Started(_Record, tag=4):
    """A worker began an attempt at an action."""

    action_id: str
    attempt: int
    started_ns: int = 0


class Progress(_Record, tag=5):
    """Bytes moved so far by an attempt; written without waiting for fsync."""

    action_id: str
    attempt: int
    bytes: int


class Completed(_Record, tag=6):
    """An action took effect, durably, at the destination.

    ``method`` names what decided a skip or verified a copy (``"size"``,
    ``"xxh128"``, ``"size+mtime"``, ``"always"``...). ``result`` names the
    stored result of a list action.
    """

    action_id: str
    attempt: int
    outcome: Outcome
    method: str = ""
    bytes: int = 0
    source: Identity | None = None
    destination: Identity | None = None
    result: str | None = None
    finished_ns: int = 0


class Failed(_Record, tag=7):
    """An attempt failed. ``retryable`` failures may be attempted again."""

    action_id: str
    attempt: int
    error: str
    message: str
    retryable: bool
    reason: str = ""
    finished_ns: int = 0


class Canceled(_Record, tag=8):
    """An action was canceled before it started, or after it failed for good.

    A failed action that is canceled is dropped: it no longer counts as
    failed, and ``retry`` leaves it alone. Readers before this meaning
    ignore a ``canceled`` record after a failure, as after any ending, so
    they still show such an action as failed. Early versions journaled
    every ``canceled`` record handed off through the inbox. So their
    journals can contain one after a failure, for an action that a user
    requested to cancel while it waited, and it now reads as canceled. ``by`` is
    ``"user"`` for a cancel that a user requested, or names the action that
    replaced a failed one (see :mod:`journalq.failures`).
    """

    action_id: str
    by: str | None = None


class SnapshotTaken(_Record, tag=9):
    """A snapshot of the folded state up to ``last_lsn`` is durable."""

    last_lsn: int
    name: str
    crc: int


class Digested(_Record, tag=10):
    """A file's digest, cached by (service, path, size, mtime, ctime, inode).

    ``observed_ns`` is when the file was read. An entry whose ``mtime_ns`` is
    too close to ``observed_ns`` is not trusted later, because the file may
    have changed again within the same timestamp tick. ``ctime_ns`` and
    ``inode`` are set for local files only: a rewrite that keeps the size
    and sets the old mtime back (``cp -p``, ``touch -r``) still changes the
    ctime, which no user can set, and a file replaced by another has
    another inode. Entries journaled before these fields existed have
    ``None`` there and match no local file.

    ``etag`` is set for an object in an object store: the ETag (S3) or
    generation (GCS) the object had when its digest was known. Such an
    entry is valid while a listing or stat reports the same size and
    ``etag``, whatever the mtime, because a rewrite with other content
    gives the object another one. Entries without it use the mtime rules.
    """

    service: Service
    path: str
    size: int
    mtime_ns: int
    digest: str
    observed_ns: int
    ctime_ns: int | None = None
    inode: int | None = None
    etag: str | None = None


class Retried(_Record, tag=11):
    """A failed action waits again, at the user's request (``retry``).

    The one record that reopens an ended action: only a ``failed`` one, and
    its attempt count and last error are kept.
    """

    action_id: str
    retried_ns: int = 0


class Part(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True, gc=False):
    """One part of a large copy, durable at the destination.

    ``checksum`` is ``"<algorithm>:<hex>"`` of the part's bytes; ``etag`` is
    what an object store returned for it, when it did.
    """

    number: int
    offset: int
    size: int
    checksum: str
    etag: str | None = None


class PartsPlanned(_Record, tag=12):
    """A large copy goes in parts of ``part_size`` bytes to ``upload``.

    ``upload`` names where the parts accumulate until the copy completes:
    a temporary file, an object store's upload id, an upload session.
    ``source`` is the file the parts come from; a source that no longer
    matches it starts the copy over.
    """

    action_id: str
    attempt: int
    part_size: int
    upload: str
    source: Identity
    planned_ns: int = 0


class PartWritten(_Record, tag=13):
    """A part of a planned copy is durable at the destination."""

    action_id: str
    attempt: int
    part: Part


class HandedOut(_Record, tag=14):
    """A batch of actions went to a copy process, which may copy them now.

    Each action named folds as if it had a ``started`` record of
    ``attempt``: it is in progress, for ``status`` in another process and
    for the next open after a crash. One record for the batch costs about
    34 bytes per action where a ``started`` record costs 46.
    """

    action_ids: tuple[str, ...]
    attempt: int = 1
    started_ns: int = 0


class Returned(_Record, tag=15):
    """Actions handed out at ``attempt`` came back without being started.

    Each one still in progress at that attempt waits again, with the
    attempt count it had before (``attempt - 1``), so a cancel can end it
    and a run can hand it out again or run it itself.
    """

    action_ids: tuple[str, ...]
    attempt: int = 1


Record = (
    QueueCreated
    | ActionAdded
    | Expanded
    | Started
    | Progress
    | Completed
    | Failed
    | Canceled
    | SnapshotTaken
    | Digested
    | Retried
    | PartsPlanned
    | PartWritten
    | HandedOut
    | Returned
)

#: Records whose batch must be durable before the call that wrote them
#: returns (the others ride along with the next synced batch).
DURABLE_TYPES: Final = (
    QueueCreated,
    ActionAdded,
    Expanded,
    Completed,
    Canceled,
    PartsPlanned,
    HandedOut,
)

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[Record])
_decoder = msgspec.msgpack.Decoder(Record)


def encode(record: Record) -> bytes:
    """Encode one record to MessagePack."""
    return _encoder.encode(record)


def encode_batch(records: list[Record]) -> bytes:
    """Encode records as the MessagePack array one journal frame carries."""
    return _encoder.encode(records)


def decode(data: bytes | memoryview) -> Record:
    """Decode one record."""
    return _decoder.decode(data)


def decode_batch(data: bytes | memoryview) -> list[Record]:
    """Decode the payload of one journal frame."""
    return _batch_decoder.decode(data)
