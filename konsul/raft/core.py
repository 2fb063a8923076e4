"""The Raft consensus core: a pure, synchronous, deterministic state machine (sans-I/O).

No sockets, no clock, no threads, no randomness except the ``random.Random`` the caller passes.
Time is ``tick()``; the network is ``step(msg)`` in and ``Ready.messages`` out; the disk is
``Ready.hard_state`` / ``Ready.entries`` out and ``persisted(index, term)`` in.

Driving it (the Ready loop of a runtime)::

    core = RaftCore(node_id, CoreConfig(...), random.Random(seed), snapshot_store,
                    hard_state=wal.hard_state, snapshot=latest_meta, entries=wal.entries())
    loop:
        on timer (every tick interval):   core.tick()
        on message from the transport:    core.step(decode(data))
        on client write:                  index, term = core.propose(data)  # NotLeaderError
        on transport connection loss:     core.peer_unreachable(peer_id)
        while core.has_ready():
            rd = core.ready()   # takes and clears the pending output; handle Readies in order
            1. if rd.hard_state:       save it durably                  (term + vote)
            2. if rd.snapshot:         save it, restore the state machine from rd.snapshot.data,
                                       reset the log to rd.snapshot.meta (drop every entry)
            3. if rd.truncate_from:    drop WAL entries with index >= rd.truncate_from
               append rd.entries; fsync (one fsync for 1-3)
               if rd.entries:          core.persisted(rd.entries[-1].index, rd.entries[-1].term)
            4. send rd.messages        (only now: they may promise what 1-3 made durable)
            5. apply rd.committed in order to the state machine, then core.applied(last index)
               (CONFIG entries: decode_configuration(entry.data) gives the configuration)
            6. rd.read_states:         serve read ``ctx`` once applied index >= ``index``
               rd.dropped_reads:       fail those reads (no leader / leadership lost); retry
        after saving a state-machine snapshot through applied index i:
            core.compact(SnapshotMeta(i, term_of_i, config_at_i), trailing=TRAILING_LOGS)

``has_ready()`` may prepare output (it batches the AppendEntries of every proposal made since the
last Ready into as few messages as possible), so call it after a burst of inputs, not per input.

Public API (stable)
-------------------
Inputs: ``tick()``, ``step(msg)``, ``propose(data) -> (index, term)``, ``propose_add(member)``
(joins as a non-voter; the leader promotes it by itself once caught up),
``propose_remove(node_id)``, ``transfer_leadership(target | None) -> target``,
``read_index(ctx)``, ``bootstrap(member)``, ``compact(meta, trailing)``,
``peer_unreachable(peer_id)``, ``persisted(index, term)``, ``applied(index)``.
Errors: ``NotLeaderError(leader_id)`` (propose/transfer on a non-leader), ``ProposalRejected
(reason)`` (transfer in progress, config change pending, unknown/duplicate member, bootstrap of a
non-empty node, ...).
Observation (read-only properties): ``node_id, role, term, vote, leader_id, commit_index,
last_index, last_term, first_index, configuration`` (latest, possibly uncommitted),
``committed_configuration, snapshot_meta, is_empty, transfer_target`` / ``lead_transferee``
(the same: the member a leader is handing leadership to, else None), ``match_index(peer)``
(leader only), ``ticks_since_leader_contact``.

Semantics worth knowing
-----------------------
* A node with an empty configuration (new, or disk wiped) never campaigns and ignores votes:
  it waits for a leader to send it the log (which begins with the configuration) or a snapshot.
* A configuration whose only voter is this node makes it leader at once (standalone mode), also
  at construction time (restart): the first Ready then carries the new term and a NOOP entry.
* ``commit_index`` counts the leader's own log only up to what ``persisted()`` acknowledged;
  ``Ready.committed`` only holds entries that are persisted locally (a follower may therefore
  emit an entry one Ready after it was written).
* The commit index is not part of HardState: after a restart the core re-learns it (a
  standalone node at once, when its NOOP persists), and re-emits committed entries that follow
  the snapshot, so the state machine restored from the snapshot replays the log after it.

Safety hooks (small methods the simulator overrides to prove it catches broken cores)
------------------------------------------------------------------------------------
* ``_may_commit(index) -> bool``: the leader may move commit to ``index`` (true only when the
  entry at ``index`` is of the current term: Figure 8).
* ``_log_is_up_to_date(last_index, last_term) -> bool``: the voting restriction (used for votes
  and pre-votes).
* ``_self_match_index() -> int``: how far the leader's own log counts towards a majority
  (the locally persisted index).
* ``_applicable_index() -> int``: the highest index ``Ready.committed`` may reach
  (``min(commit_index, persisted index)``).
* ``_quorum_index() -> int``: the highest index stored on a majority of the voters.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from konsul.raft.messages import Message
from konsul.raft.types import Configuration, Entry, HardState, Member, SnapshotMeta

__all__ = [
    "CoreConfig",
    "NotLeaderError",
    "ProposalRejected",
    "RaftCore",
    "ReadState",
    "Ready",
    "ReceivedSnapshot",
    "Role",
    "SnapshotSource",
]


_NO_HARD_STATE = HardState()


class Role(Enum):
    FOLLOWER = "Follower"
    PRE_CANDIDATE = "PreCandidate"
    CANDIDATE = "Candidate"
    LEADER = "Leader"


@dataclass(frozen=True, slots=True)
class CoreConfig:
    # a follower with no word from a leader this long starts a pre-vote (randomised in [t, 2t))
    heartbeat_timeout_ticks: int = 100
    # a (pre-)candidate without a result retries after this (randomised in [t, 2t))
    election_timeout_ticks: int = 100
    # check-quorum: a leader that has not heard from a majority within this steps down
    leader_lease_ticks: int = 50
    commit_ticks: int = 5  # idle heartbeat cadence of the leader
    max_append_entries: int = 64  # entries per AppendEntries
    max_inflight: int = 8  # AppendEntries in flight per follower (pipelining)
    snapshot_chunk_bytes: int = 1 << 20
    pre_vote: bool = True
    check_quorum: bool = True


class SnapshotSource(Protocol):
    """How the leader reads chunks of its latest snapshot to send InstallSnapshot."""

    def snapshot_size(self, meta: SnapshotMeta) -> int: ...

    def read_snapshot_chunk(self, meta: SnapshotMeta, offset: int, size: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ReadState:
    """Serve read ``ctx`` once the applied index is ``>= index``."""

    ctx: int
    index: int


@dataclass(frozen=True, slots=True)
class ReceivedSnapshot:
    meta: SnapshotMeta
    data: bytes


@dataclass(slots=True)
class Ready:
    """Pending output, in the order the runtime must handle it (see the module docstring)."""

    hard_state: HardState | None = None
    snapshot: ReceivedSnapshot | None = None
    truncate_from: int | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped_reads: list[int] = field(default_factory=list)


class NotLeaderError(Exception):
    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id})")
        self.leader_id = leader_id


class ProposalRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RaftCore:
    def __init__(
        self,
        node_id: str,
        config: CoreConfig,
        rng: random.Random,
        snapshots: SnapshotSource,
        *,
        hard_state: HardState = _NO_HARD_STATE,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    def step(self, msg: Message) -> None:
        raise NotImplementedError

    def propose(self, data: bytes) -> tuple[int, int]:
        raise NotImplementedError

    def propose_add(self, member: Member) -> tuple[int, int]:
        raise NotImplementedError

    def propose_remove(self, node_id: str) -> tuple[int, int]:
        raise NotImplementedError

    def transfer_leadership(self, target: str | None) -> str:
        raise NotImplementedError

    def read_index(self, ctx: int) -> None:
        raise NotImplementedError

    def bootstrap(self, member: Member) -> None:
        raise NotImplementedError

    def compact(self, meta: SnapshotMeta, trailing: int) -> None:
        raise NotImplementedError

    def peer_unreachable(self, peer_id: str) -> None:
        raise NotImplementedError

    def persisted(self, index: int, term: int) -> None:
        raise NotImplementedError

    def applied(self, index: int) -> None:
        raise NotImplementedError

    def has_ready(self) -> bool:
        raise NotImplementedError

    def ready(self) -> Ready:
        raise NotImplementedError

    @property
    def node_id(self) -> str:
        raise NotImplementedError

    @property
    def role(self) -> Role:
        raise NotImplementedError

    @property
    def term(self) -> int:
        raise NotImplementedError

    @property
    def vote(self) -> str | None:
        raise NotImplementedError

    @property
    def leader_id(self) -> str | None:
        raise NotImplementedError

    @property
    def commit_index(self) -> int:
        raise NotImplementedError

    @property
    def last_index(self) -> int:
        raise NotImplementedError

    @property
    def last_term(self) -> int:
        raise NotImplementedError

    @property
    def first_index(self) -> int:
        raise NotImplementedError

    @property
    def configuration(self) -> Configuration:
        raise NotImplementedError

    @property
    def committed_configuration(self) -> Configuration:
        raise NotImplementedError

    @property
    def snapshot_meta(self) -> SnapshotMeta | None:
        raise NotImplementedError

    @property
    def is_empty(self) -> bool:
        raise NotImplementedError

    @property
    def transfer_target(self) -> str | None:
        raise NotImplementedError

    @property
    def lead_transferee(self) -> str | None:
        raise NotImplementedError

    def match_index(self, peer_id: str) -> int:
        raise NotImplementedError

    @property
    def ticks_since_leader_contact(self) -> int:
        raise NotImplementedError

    # safety hooks
    def _may_commit(self, index: int) -> bool:
        raise NotImplementedError

    def _log_is_up_to_date(self, last_index: int, last_term: int) -> bool:
        raise NotImplementedError

    def _self_match_index(self) -> int:
        raise NotImplementedError

    def _applicable_index(self) -> int:
        raise NotImplementedError

    def _quorum_index(self) -> int:
        raise NotImplementedError
