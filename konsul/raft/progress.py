"""A leader's view of one follower, and its flow-control states (etcd-io/raft's
``tracker/progress.go``).

``match`` is the highest index known to be in the follower's log (it only rises, except when
the follower turns out to have lost its disk); ``next`` is the next index to send. The state
says how the leader feeds the follower:

* PROBE: the match point is unknown. One AppendEntries at a time (``probe_sent``); a refusal
  moves ``next`` back (``maybe_decrease_to``), an acceptance that reaches ``next - 1`` switches
  to REPLICATE. A periodic heartbeat re-arms the probe, in case it was lost.
* REPLICATE: optimistic pipelining. Each AppendEntries moves ``next`` past what it carries
  (``sent_entries``) and is recorded in ``inflight`` until the follower acknowledges it, up to
  ``max_inflight`` messages and ``max_inflight_bytes`` of entries: a follower far behind is fed
  at the pace it acknowledges. A refusal, a lost tail (``stall``) or an unreachable peer falls
  back to PROBE.
* SNAPSHOT: the entries the follower needs are compacted away: InstallSnapshot chunks, one at
  a time, each answered; a chunk or answer lost for a while is sent again (``snap_elapsed``).
  Done, the follower is probed from the snapshot point.

Transitions are the methods below; the leader (``RaftCore``) decides when to call them and what
to send.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

from konsul.raft.types import SnapshotMeta

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(IntEnum):
    PROBE = 0  # one AppendEntries at a time until the follower's match point is known
    REPLICATE = 1  # optimistic pipelining: up to max_inflight AppendEntries in flight
    SNAPSHOT = 2  # sending InstallSnapshot chunks, one at a time


class Inflights:
    """The AppendEntries in flight to one follower: how many, and how many bytes of entries
    (etcd-io/raft's ``tracker/inflights.go``)."""

    __slots__ = ("_sent", "bytes")

    def __init__(self) -> None:
        self._sent: deque[tuple[int, int]] = deque()  # (last index, bytes) per message
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._sent)

    def __bool__(self) -> bool:
        return bool(self._sent)

    def add(self, last: int, size: int) -> None:
        self._sent.append((last, size))
        self.bytes += size

    def free_to(self, index: int) -> None:
        """The follower acknowledged everything through ``index``."""
        sent = self._sent
        while sent and sent[0][0] <= index:
            self.bytes -= sent.popleft()[1]

    def clear(self) -> None:
        self._sent.clear()
        self.bytes = 0

    def full(self, max_count: int, max_bytes: int) -> bool:
        """No room for another message (the last one may overshoot ``max_bytes``, as etcd's)."""
        return len(self._sent) >= max_count or self.bytes >= max_bytes


class Progress:
    """The leader's view of one follower."""

    __slots__ = (
        "inflight",
        "last_active",
        "match",
        "next",
        "probe_sent",
        "read_ack",
        "snap_elapsed",
        "snap_meta",
        "snap_offset",
        "snap_size",
        "stall",
        "state",
    )

    def __init__(self, next_index: int, now: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.inflight = Inflights()  # AppendEntries sent in REPLICATE, not yet acknowledged
        self.probe_sent = False
        self.last_active = now  # leader tick of the follower's last message (check-quorum)
        self.read_ack = 0  # highest read round the follower echoed
        self.stall = 0  # ticks in REPLICATE with entries in flight and no progress
        self.snap_meta: SnapshotMeta | None = None
        self.snap_offset = 0
        self.snap_size = 0
        self.snap_elapsed = 0

    # ------------------------------------------------------------------ states

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.inflight.clear()
        self.probe_sent = False
        self.snap_meta = None

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()
        self.stall = 0
        self.snap_meta = None

    def become_snapshot(self, meta: SnapshotMeta, size: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.inflight.clear()
        self.switch_snapshot(meta, size)

    def switch_snapshot(self, meta: SnapshotMeta, size: int) -> None:
        """Send ``meta`` from its first byte (a newer snapshot replaces the one in transfer:
        the store may prune the older one)."""
        self.snap_meta = meta
        self.snap_offset = 0
        self.snap_size = size

    # ------------------------------------------------------------------ replication

    def sent_entries(self, last: int, size: int) -> None:
        """An AppendEntries through ``last`` with ``size`` bytes of entries left: in REPLICATE,
        the next one follows it."""
        if self.state is ProgressState.REPLICATE:
            self.inflight.add(last, size)
            self.next = last + 1

    def maybe_update(self, index: int) -> bool:
        """The follower accepted an AppendEntries: its log matches ours through ``index``.

        Returns whether ``match`` rose. A probe answered at ``next - 1`` or beyond starts the
        pipeline; in REPLICATE the AppendEntries it acknowledges are no longer in flight.
        """
        advanced = index > self.match
        if advanced:
            self.match = index
            self.stall = 0
            if self.next <= index:
                self.next = index + 1
        state = self.state
        if state is ProgressState.PROBE:
            if self.match >= self.next - 1:  # the probe matched (not just a heartbeat answer)
                self.become_replicate()
        elif state is ProgressState.REPLICATE:
            self.inflight.free_to(index)
        return advanced

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """The follower refused the AppendEntries at prev index ``rejected``; ``hint`` is the
        leader's last index at or below which the follower may match (from its conflict hint).

        Returns False for a stale refusal (ignored). Otherwise probes from the hint onwards.
        """
        state = self.state
        if state is ProgressState.REPLICATE:
            if rejected < self.match:
                return False  # stale
            # A refusal at exactly the match point is stale or means the follower lost its
            # disk: probing tells which.
        elif state is ProgressState.PROBE:
            if rejected != self.next - 1:
                return False  # stale
            if rejected <= self.match:
                # The follower refuses what it had acknowledged: its disk was wiped (see
                # konsul/raft/catchup.py). Forget its match (counting it lower is always safe)
                # and rebuild its log from the hint.
                self.match = 0
        else:
            return False
        self.become_probe()
        self.next = max(min(rejected, hint + 1), self.match + 1)
        return True

    def snapshot_reached(self, index: int) -> bool:
        """The follower installed (or already held) a snapshot through ``index``: returns
        whether ``match`` rose. The caller then probes from there if it was sending one."""
        if index > self.match:
            self.match = index
            return True
        return False
