"""The Raft log as the core sees it: entries, the snapshot behind them, and four positions.

Like etcd-io/raft's ``raftLog`` (with ``unstable`` folded in), but simpler: the runtime's WAL
holds every entry the core holds, so the core keeps the whole log after its snapshot point in
memory and only tracks which part it has not handed out yet.

Indexes, from low to high (each ``<=`` the next, except ``commit`` which may run ahead of
``persisted`` on a leader or a follower whose fsync is slow)::

    base        the entry before entries[0]: the snapshot point, or in front of it when the
                runtime recovered trailing entries that the snapshot also covers
    applied     the runtime reported it applied this far (``RaftCore.applied``)
    applying    handed out in ``Ready.committed`` this far
    commit      known committed
    persisted   the runtime reported this far durable (``RaftCore.persisted``)
    unstable_from - 1   handed out in ``Ready.entries`` this far
    last_index  the last entry

Nothing here decides anything Raft-specific: the core decides what to append, truncate and
commit, and the log keeps the positions consistent.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from konsul.raft.types import Entry, SnapshotMeta

__all__ = ["ENTRY_OVERHEAD", "RaftLog"]

# What an entry costs in an AppendEntries beyond its data (term, kind, lengths), about: the
# unit of the byte limits on replication is len(data) + ENTRY_OVERHEAD.
ENTRY_OVERHEAD = 16


def _term_of(entry: Entry) -> int:
    return entry.term


class RaftLog:
    __slots__ = (
        "_bytes",
        "applied",
        "applying",
        "base",
        "base_term",
        "commit",
        "entries",
        "persisted",
        "snapshot",
        "truncate_from",
        "unstable_from",
    )

    def __init__(self, snapshot: SnapshotMeta | None, entries: Sequence[Entry]) -> None:
        """The log a runtime recovered: its latest snapshot and the WAL's entries."""
        # entries[k] has index base + 1 + k; base_term is the term at base (None when unknown:
        # trailing entries recovered in front of a snapshot).
        self.snapshot = snapshot
        self.base = snapshot.index if snapshot else 0
        self.base_term: int | None = snapshot.term if snapshot else 0
        self.entries: list[Entry] = []
        # _bytes[k] - _bytes[j]: the size of entries[j:k] for the byte limits of replication.
        # It covers a prefix of the entries and grows when a batch is cut (each entry is sized
        # once, however many followers it goes to), so appending costs nothing here.
        self._bytes = [0]
        self._load(entries)
        commit = snapshot.index if snapshot else 0
        self.commit = commit
        self.applying = commit
        self.applied = commit
        self.persisted = self.last_index  # everything storage recovered is durable
        self.unstable_from = self.last_index + 1
        # the lowest index truncated since the last Ready, if that Ready had handed it out
        self.truncate_from: int | None = None

    def _load(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first, last = entries[0].index, entries[-1].index
        if last - first + 1 != len(entries):
            raise ValueError("recovered entries are not contiguous")
        snap = self.snapshot
        if first > self.base + 1:
            raise ValueError(f"recovered entries start at {first}, after {self.base + 1}")
        if snap is None:
            if first != 1:
                raise ValueError("recovered entries without a snapshot must start at 1")
            self.entries = list(entries)
            return
        if last < snap.index:
            return  # the snapshot covers all of them
        if first <= snap.index:
            if entries[snap.index - first].term != snap.term:
                raise ValueError("recovered log disagrees with the snapshot")
            # keep the trailing entries in front of the snapshot (followers may need them)
            self.base = first - 1
            self.base_term = None
        self.entries = list(entries)

    # ------------------------------------------------------------------ reading

    @property
    def first_index(self) -> int:
        return self.base + 1

    @property
    def last_index(self) -> int:
        return self.base + len(self.entries)

    @property
    def last_term(self) -> int:
        if self.entries:
            return self.entries[-1].term
        return self.base_term or 0

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` if the log (or its snapshot) still knows it."""
        base = self.base
        if index > base:
            k = index - base - 1
            entries = self.entries
            return entries[k].term if k < len(entries) else None
        if index == base:
            return self.base_term
        snap = self.snapshot
        if snap is not None and index == snap.index:
            return snap.term
        return None

    def slice(self, after: int, count: int, max_bytes: int) -> tuple[tuple[Entry, ...], int]:
        """The entries following index ``after`` (which must be >= base), at most ``count`` of
        them and at most ``max_bytes`` (but at least one entry, however large), and their size
        in bytes (``ENTRY_OVERHEAD`` each plus their data)."""
        entries = self.entries
        lo = after - self.base
        hi = min(lo + count, len(entries))
        sizes = self._bytes
        if len(sizes) <= hi:
            total = sizes[-1]
            for e in entries[len(sizes) - 1 : hi]:
                total += len(e.data) + ENTRY_OVERHEAD
                sizes.append(total)
        start = sizes[lo]
        if sizes[hi] - start > max_bytes and hi - lo > 1:
            hi = max(lo + 1, bisect_right(sizes, start + max_bytes, lo + 1, hi + 1) - 1)
        return tuple(entries[lo:hi]), sizes[hi] - start

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last index <= ``index`` whose entry has a term <= ``term`` (and that term).

        Terms never decrease along a log, so this is a binary search.
        """
        base = self.base
        if index <= base:
            return index, self.term_at(index) or 0
        k = bisect_right(self.entries, term, 0, index - base, key=_term_of)
        if k == 0:
            return base, self.base_term or 0
        return base + k, self.entries[k - 1].term

    def new_entries(self, entries: Sequence[Entry]) -> Sequence[Entry]:
        """The part of a leader's ``entries`` (the first follows an entry we match) that we
        lack, starting at the first conflict if there is one (``conflict`` tells which)."""
        last = self.last_index
        if entries[0].index > last:
            return entries
        log = self.entries
        base = self.base
        i, n = 0, len(entries)
        while i < n:
            e = entries[i]
            if e.index > last or log[e.index - base - 1].term != e.term:
                break
            i += 1
        return entries[i:]

    # ------------------------------------------------------------------ writing

    def append(self, entries: Sequence[Entry]) -> None:
        self.entries.extend(entries)

    def truncate(self, index: int) -> None:
        """Drop the entries from ``index`` on (the caller checked they are not committed)."""
        k = index - self.base - 1
        del self.entries[k:]
        del self._bytes[k + 1 :]
        if index < self.unstable_from:
            self.unstable_from = index
            if self.truncate_from is None or index < self.truncate_from:
                self.truncate_from = index
        if self.persisted >= index:
            self.persisted = index - 1

    def persisted_to(self, index: int, term: int) -> bool:
        """The runtime made the log durable through ``index``@``term``; False if stale (that
        entry was since truncated and replaced, or it says nothing new)."""
        if index <= self.persisted or self.term_at(index) != term:
            return False
        self.persisted = min(index, self.unstable_from - 1)
        return True

    def compact(self, meta: SnapshotMeta, trailing: int) -> None:
        """A snapshot through ``meta.index`` was saved: drop the entries it covers but for the
        last ``trailing`` ones (a follower slightly behind gets entries, not a snapshot)."""
        if self.snapshot is not None and meta.index <= self.snapshot.index:
            return
        if meta.index > self.applying:
            raise ValueError(f"snapshot {meta.index} is past the applied index {self.applying}")
        if meta.index > self.base and self.term_at(meta.index) != meta.term:
            raise ValueError("snapshot term disagrees with the log")
        self.snapshot = meta
        keep_from = max(self.base, meta.index - max(trailing, 0))
        if keep_from > self.base:
            self.base_term = self.term_at(keep_from)
            dropped = keep_from - self.base
            del self.entries[:dropped]
            # (the sizes are running totals: those that remain still subtract right)
            self._bytes = self._bytes[dropped:] if len(self._bytes) > dropped else [0]
            self.base = keep_from

    def restore(self, meta: SnapshotMeta) -> None:
        """Reset to a snapshot received from a leader: no entries, everything through it
        committed, applied (the runtime restores its state machine) and durable."""
        self.entries = []
        self._bytes = [0]
        self.base = meta.index
        self.base_term = meta.term
        self.snapshot = meta
        self.commit = self.applying = self.persisted = meta.index
        self.applied = max(self.applied, meta.index)
        self.unstable_from = meta.index + 1
        self.truncate_from = None

    # ------------------------------------------------------------------ handing out

    def has_unstable(self) -> bool:
        return self.unstable_from <= self.base + len(self.entries)

    def take_unstable(self) -> list[Entry]:
        """The entries not handed out yet, for ``Ready.entries``."""
        entries = self.entries[self.unstable_from - self.base - 1 :]
        self.unstable_from = self.base + len(self.entries) + 1
        return entries

    def take_committed(self, hi: int) -> list[Entry]:
        """The entries after ``applying`` through ``hi``, for ``Ready.committed``."""
        base = self.base
        entries = self.entries[self.applying - base : hi - base]
        self.applying = hi
        return entries
