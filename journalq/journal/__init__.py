"""The write-ahead journal: segment files of checksummed, LSN-numbered frames.

The journal stores opaque payloads: the caller supplies the function that
encodes a batch of records, and decodes :attr:`Frame.payload` itself. The
byte layout is described in :mod:`journalq.journal.format`, recovery in
:mod:`journalq.journal.reader`, group commit in :mod:`journalq.journal.writer`
and the offline repair in :mod:`journalq.journal.repair`. Nothing here
imports fsspec or filelock; the caller holds the queue lock.
"""

from .reader import Frame, ScanResult, SegmentInfo, TornTail, scan
from .repair import RepairReport, repair
from .writer import SEGMENT_BYTES, Journal, SyncMode

__all__ = [
    "SEGMENT_BYTES",
    "Frame",
    "Journal",
    "RepairReport",
    "ScanResult",
    "SegmentInfo",
    "SyncMode",
    "TornTail",
    "repair",
    "scan",
]
