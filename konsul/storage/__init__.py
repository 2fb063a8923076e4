"""Durable storage: the write-ahead log (the Raft log plus hard state) and the snapshot store."""

from konsul.storage.snapshots import (
    CorruptSnapshot,
    SkippedSnapshot,
    SnapshotInfo,
    SnapshotNotFound,
    SnapshotStore,
)
from konsul.storage.wal import DEFAULT_SEGMENT_BYTES, RecoveryReport, WriteAheadLog

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "CorruptSnapshot",
    "RecoveryReport",
    "SkippedSnapshot",
    "SnapshotInfo",
    "SnapshotNotFound",
    "SnapshotStore",
    "WriteAheadLog",
]
