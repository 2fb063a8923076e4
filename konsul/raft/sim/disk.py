"""The simulated disk: a durable part and an unsynced part, and fsyncs that the sim completes.

The runtime writes what a `Ready` carries (hard state, snapshot, truncation, entries) to the
unsynced part at once, then asks for an fsync. The simulator decides when that fsync completes
(possibly late); only then does the write become durable. A crash keeps the durable part plus,
at most, a prefix of what was written after it (a torn write never reorders records), and a
lost disk keeps nothing.

Two copies of the log are kept (`written`, what the node sees, and `durable`) so that a crash
is an O(log length) copy rather than a replay, and every write is O(entries written).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from konsul.raft.types import Entry, HardState, SnapshotMeta


@dataclass(slots=True)
class LogImage:
    """One view of the node's storage: hard state, newest snapshot, log entries after `offset`."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b""
    offset: int = 0  # entries[k] has index offset + 1 + k
    entries: list[Entry] = field(default_factory=list)

    def copy(self) -> LogImage:
        return LogImage(
            self.hard_state, self.snapshot, self.snapshot_data, self.offset, list(self.entries)
        )

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def term_at(self, index: int) -> int | None:
        """Term of the entry at index, the snapshot's term at its index, None if unknown."""
        k = index - self.offset - 1
        if 0 <= k < len(self.entries):
            return self.entries[k].term
        if index == self.offset:
            if self.snapshot is not None and self.snapshot.index == index:
                return self.snapshot.term
            return 0 if index == 0 else None
        return None

    def entry(self, index: int) -> Entry | None:
        k = index - self.offset - 1
        if 0 <= k < len(self.entries):
            return self.entries[k]
        return None

    # -- the operations the runtime performs, applied to this image ---------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """A snapshot from the leader resets the log to it: every entry is dropped (the core's
        contract; the leader sends what follows)."""
        self.snapshot = meta
        self.snapshot_data = data
        self.entries = []
        self.offset = meta.index

    def truncate_from(self, index: int) -> None:
        k = index - self.offset - 1
        if k < 0:
            self.entries = []
            self.offset = index - 1
        elif k < len(self.entries):
            del self.entries[k:]

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first != self.last_index + 1:
            # The contract says entries continue the log (after truncate_from). A gap is a bug
            # in the core's Ready; the runtime's WAL would refuse it too.
            raise DiskError(
                f"append of entries from {first} to a log ending at {self.last_index}"
            )
        self.entries.extend(entries)

    def save_local_snapshot(self, meta: SnapshotMeta, data: bytes, keep_after: int) -> None:
        """The runtime's own snapshot (compaction): entries up to keep_after are discarded."""
        self.snapshot = meta
        self.snapshot_data = data
        self.drop_prefix(keep_after)

    def drop_prefix(self, upto: int) -> None:
        k = upto - self.offset
        if k <= 0:
            return
        del self.entries[:k]
        self.offset = upto


class DiskError(Exception):
    """The core asked the runtime for a write the storage layer would refuse."""


# A pending write: ("hs", HardState) | ("snap", (meta, data)) | ("trunc", index) |
# ("append", list[Entry]).
Op = tuple[str, object]


class SimDisk:
    """The node's disk across crashes: `written` is what the live process sees."""

    __slots__ = ("_pending", "durable", "fsyncs", "retained", "retention", "written")

    def __init__(self, retention: int = 2) -> None:
        self.retention = retention
        self.durable = LogImage()
        self.written = LogImage()
        self._pending: list[Op] = []
        self.fsyncs = 0
        # The snapshot store's files, newest last (what a leader streams to followers).
        self.retained: list[tuple[SnapshotMeta, bytes]] = []

    def _retain(self, meta: SnapshotMeta, data: bytes) -> None:
        self.retained.append((meta, data))
        del self.retained[: -self.retention]

    def write_hard_state(self, hs: HardState) -> None:
        self.written.set_hard_state(hs)
        self._pending.append(("hs", hs))

    def write_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self.written.install_snapshot(meta, data)
        self._pending.append(("snap", (meta, data)))
        self._retain(meta, data)

    def write_truncate(self, index: int) -> None:
        self.written.truncate_from(index)
        self._pending.append(("trunc", index))

    def write_entries(self, entries: list[Entry]) -> None:
        self.written.append(entries)
        self._pending.append(("append", list(entries)))

    def barrier(self) -> int:
        """The number of pending writes an fsync issued now would cover."""
        return len(self._pending)

    def sync(self, count: int) -> None:
        """An fsync completed: the first `count` pending writes are now durable."""
        self.fsyncs += 1
        for op in self._pending[:count]:
            _apply(self.durable, op)
        del self._pending[:count]

    def compact(self, meta: SnapshotMeta, data: bytes, keep_after: int) -> None:
        """A local snapshot is written and fsynced synchronously by the runtime (temp file,
        fsync, rename, directory fsync) before the log is compacted, so it is durable at once.
        Only durable entries are ever compacted: they were applied, hence persisted."""
        self.written.save_local_snapshot(meta, data, keep_after)
        self._retain(meta, data)
        if self.durable.snapshot is None or self.durable.snapshot.index < meta.index:
            self.durable.save_local_snapshot(meta, data, keep_after)

    def crash(self, rng: random.Random, torn: bool = True) -> int:
        """The process died: unsynced writes are lost, except perhaps a prefix of them (the OS
        may have flushed some pages on its own). Returns how many pending writes survived."""
        kept = 0
        if torn and self._pending and rng.random() < 0.5:
            kept = rng.randint(0, len(self._pending))
            for op in self._pending[:kept]:
                _apply(self.durable, op)
            if kept < len(self._pending) and rng.random() < 0.5:
                # A torn append: some records of the next batch reached the platter.
                kind, payload = self._pending[kept]
                if kind == "append":
                    batch: list[Entry] = payload  # type: ignore[assignment]
                    part = rng.randint(0, len(batch))
                    if part:
                        _apply(self.durable, ("append", batch[:part]))
        self._pending.clear()
        self.written = self.durable.copy()
        return kept

    def wipe(self) -> None:
        """The whole disk is gone (a new volume)."""
        self._pending.clear()
        self.durable = LogImage()
        self.written = LogImage()
        self.retained = []


def _apply(image: LogImage, op: Op) -> None:
    kind, payload = op
    if kind == "hs":
        image.set_hard_state(payload)  # type: ignore[arg-type]
    elif kind == "snap":
        snap: tuple[SnapshotMeta, bytes] = payload  # type: ignore[assignment]
        image.install_snapshot(snap[0], snap[1])
    elif kind == "trunc":
        image.truncate_from(payload)  # type: ignore[arg-type]
    else:
        image.append(payload)  # type: ignore[arg-type]
