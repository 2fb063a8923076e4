"""The Raft consensus core: a pure, synchronous, deterministic state machine (sans-I/O).

No sockets, no clock, no threads, no randomness except the ``random.Random`` the caller passes.
Time is ``tick()``; the network is ``step(msg)`` in and ``Ready.messages`` out; the disk is
``Ready.hard_state`` / ``Ready.entries`` out and ``persisted(index, term)`` in.

Driving it (the Ready loop of a runtime)::

    core = RaftCore(node_id, CoreConfig(...), random.Random(seed), snapshot_store,
                    hard_state=wal.hard_state, snapshot=latest_meta, entries=wal.entries())
    loop:
        on timer (every tick interval):   core.tick()
        on message from the transport:    core.step(decode(data))      # any message, any sender
        on client writes:                 index, term = core.propose(data)  # or propose_many
        on transport connection loss:     core.peer_unreachable(peer_id)
        while core.has_ready():
            rd = core.ready()   # takes and clears the pending output; handle Readies in order
            1. if rd.hard_state:       save it durably                  (term + vote)
            2. if rd.snapshot:         save it, restore the state machine from rd.snapshot.data
                                       (None: from the SnapshotSink the core was given, which
                                       received its chunks), reset the log to
                                       rd.snapshot.meta (drop every entry),
                                       core.applied(rd.snapshot.meta.index)
            3. if rd.truncate_from:    drop WAL entries with index >= rd.truncate_from
               append rd.entries; fsync (one fsync for 1-3)
               if rd.entries:          core.persisted(rd.entries[-1].index, rd.entries[-1].term)
            4. send rd.messages        (only now: they may promise what 1-3 made durable;
                                       AppendEntries, InstallSnapshot and TimeoutNow may go
                                       before 1-3: they never share a Ready with hard_state)
            5. apply rd.committed in order to the state machine, then core.applied(last index)
               (CONFIG entries: decode_configuration(entry.data) is the new configuration; the
               runtime tracks it to put the configuration at index i into SnapshotMeta)
            6. rd.read_states:         serve read ``ctx`` once applied index >= ``index``
               rd.dropped_reads:       fail those reads (no leader / leadership lost); retry
        after saving a state-machine snapshot through applied index i:
            core.compact(SnapshotMeta(i, term_at(i), config_at_i), trailing=TRAILING_LOGS)

``persisted()`` may also be called later, from another Ready's handling (a stale ack, whose
entry was since overwritten, is recognised by its term and ignored). ``has_ready()`` may prepare
output: it batches the AppendEntries of every proposal made since the last Ready into as few
messages as the limits allow, so call it after a burst of inputs, not per input.
``SnapshotSource`` serves the snapshot last given to ``compact()`` (a transfer in progress
switches to the newest one, so older ones may be pruned).

Public API (stable)
-------------------
Inputs: ``tick()``, ``step(msg)``, ``propose(data) -> (index, term)``,
``propose_many(datas) -> (first index, term)`` (addition: the same for a batch),
``propose_add(member)`` (joins as a non-voter; the leader promotes it by itself once its match
index reaches the commit index), ``propose_remove(node_id)``,
``transfer_leadership(target | None) -> target``, ``read_index(ctx)``, ``bootstrap(member)``,
``compact(meta, trailing)``, ``peer_unreachable(peer_id)``, ``persisted(index, term)``,
``applied(index)``.
Errors: ``NotLeaderError(leader_id)`` (propose, config change, transfer on a non-leader),
``ProposalRejected(reason)`` (transfer in progress, a configuration change pending, the leader
has not committed an entry of its term yet, unknown/duplicate member or address, removing the
last voter, bootstrap of a non-empty node, transfer to a non-voter...), ``RaftSafetyError`` (a
leader sent an entry that conflicts with one this node holds as committed: only a broken core
can cause it).
Observation (read-only properties): ``node_id, role, term, vote, leader_id, commit_index,
last_index, last_term, first_index, configuration`` (latest, possibly uncommitted),
``committed_configuration, snapshot_meta, is_empty, catching_up`` (addition: started empty, not
promoted since), ``config_change_blocker`` (addition: why a change would be refused for now,
else None), ``transfer_target`` / ``lead_transferee`` (the same: the member a leader is
handing leadership to, else None), ``match_index(peer)`` (leader only; NotLeaderError
otherwise), ``ticks_since_leader_contact``, and
``term_at(index)`` (the term of an entry still in the log or at the snapshot point, else None).

Semantics worth knowing
-----------------------
* Pre-vote: a follower campaigns with PreVote (its term unchanged) and becomes a candidate
  only with a majority of pre-votes. A pre-vote is granted only by a node that has not heard
  from a leader for a heartbeat timeout (or was told by ``peer_unreachable`` that it is gone)
  and whose log is not ahead. With ``check_quorum`` a RequestVote is ignored for the same reason
  unless it follows a leadership transfer (a transfer claimed by a server outside our latest
  configuration does not count). Votes and pre-votes are processed whatever their sender
  (Raft dissertation 4.1: our configuration may be stale and lack a new voter); a removed server
  that keeps running cannot disrupt, as the members that hear from a leader refuse it.
* A node that starts empty (new, or disk wiped) is *catching up*: it replicates like any
  follower but never campaigns, votes or grants a pre-vote, and writes no hard state, until its
  log holds its own promotion, appended after it started (the wiped-disk rule; its safety
  argument, the checks that keep an old promotion out, and its weak spots are written once, as
  numbered steps, in ``konsul/raft/catchup.py``). The operator removes and re-adds a member
  whose volume was lost, and re-adds a voter that keeps reporting ``catching_up``. A follower
  also records the leader it follows as its vote for that term (step 8 there).
* A configuration whose only voter is this node makes it leader at once (standalone mode), also
  at construction time (restart): the first Ready then carries the new term and a NOOP entry.
* The latest configuration in the log is in force as soon as it is appended (and undone if the
  entry is truncated). A removed leader keeps leading until its removal commits, then sends
  TimeoutNow to an up-to-date voter and steps down.
* ``commit_index`` counts the leader's own log only up to what ``persisted()`` acknowledged;
  ``Ready.committed`` only holds entries that are persisted locally (a follower may therefore
  emit an entry one Ready after it was written).
* The commit index is not part of HardState: after a restart the core re-learns it (a
  standalone node at once, when its NOOP persists), and re-emits the committed entries that
  follow the snapshot, so the state machine restored from the snapshot replays the log after it.
* ReadIndex: a leader answers once it has committed an entry of its term and a majority has
  echoed a heartbeat sent after the read arrived (all reads of one Ready share one round); a
  follower forwards ReadIndexRequest to its leader; reads are dropped when leadership is lost,
  when the leader changes, or when a forwarded read gets no answer within an election timeout.

Tracing
-------
``RaftCore(..., trace=callable)`` calls ``trace(line)`` with what the core does: each message
it steps (``a->b AppendEntries term=2 ...``, see ``describe.py``), the contents of each Ready
it hands out, and state changes prefixed with the node id (``b became leader in term 2``,
``a committed through 5``, ``a progress b: probe -> replicate, match=4 next=5``). Off (None)
it costs one attribute test per step. ``tests/raft/testdata/*.txt`` are transcripts of it.

Where things live
-----------------
``RaftCore`` (here) decides: roles, elections, what a leader sends, what a follower accepts.
The parts it decides with, each small and separately readable (after etcd-io/raft's split):
``log.py`` the entries and their positions (commit, persisted, handed out); ``progress.py`` a
leader's view of each follower and its flow-control states; ``quorum.py`` majority arithmetic;
``read_only.py`` the ReadIndex queues; ``confchange.py`` the configurations in the log and
single-server changes; ``catchup.py`` the wiped-disk rule and its safety argument;
``errors.py`` the exceptions. ``Ready.hard_state`` is computed by comparing the term and vote
with the last hard state handed out, not by flags.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from konsul.raft.catchup import CatchUp
from konsul.raft.confchange import Configurations, with_learner, with_voter, without
from konsul.raft.describe import describe_config, describe_message, describe_ready
from konsul.raft.errors import NotLeaderError, ProposalRejected, RaftSafetyError
from konsul.raft.log import RaftLog
from konsul.raft.messages import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    Message,
    PreVote,
    PreVoteResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode_configuration,
    encode_configuration,
    make_entry,
)
from konsul.raft.progress import Progress, ProgressState
from konsul.raft.quorum import VoteResult, majority, quorum_index, vote_result
from konsul.raft.read_only import ForwardedReads, ReadIndexQueue
from konsul.raft.types import Configuration, Entry, EntryKind, HardState, Member, SnapshotMeta

__all__ = [
    "CoreConfig",
    "NotLeaderError",
    "ProposalRejected",
    "RaftCore",
    "RaftSafetyError",
    "ReadState",
    "Ready",
    "ReceivedSnapshot",
    "Role",
    "SnapshotSink",
    "SnapshotSource",
]

_NO_HARD_STATE = HardState()
_EMPTY_CONFIG = Configuration()
_CONFIG = EntryKind.CONFIG
_COMMAND = EntryKind.COMMAND
_REPLICATION = (AppendEntries, InstallSnapshot, TimeoutNow)


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
    # bytes of entries per AppendEntries (at least one entry is sent, however large; an entry
    # counts len(data) + log.ENTRY_OVERHEAD), as etcd's MaxSizePerMsg
    max_append_bytes: int = 1 << 20
    max_inflight: int = 8  # AppendEntries in flight per follower (pipelining)
    # bytes of entries in flight per follower, as etcd's MaxInflightBytes: a follower far
    # behind gets entries at the pace it acknowledges them
    max_inflight_bytes: int = 4 << 20
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


class SnapshotSink(Protocol):
    """Where a follower puts the snapshot a leader sends it, chunk by chunk (the runtime: a
    file beside its snapshots, so that no snapshot is ever whole in memory; by default a
    buffer). ``begin`` starts over (a transfer restarted from offset 0); the core checks the
    offsets, so ``write`` appends; ``finish`` returns the whole body, or None when the sink
    keeps it (then ``Ready.snapshot.data`` is None and the runtime reads it from the sink)."""

    def begin(self, meta: SnapshotMeta) -> None: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> bytes | None: ...


class MemorySink:
    """The default ``SnapshotSink``: the body in memory, handed out in ``Ready.snapshot``."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def begin(self, meta: SnapshotMeta) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data

    def finish(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


@dataclass(frozen=True, slots=True)
class ReceivedSnapshot:
    meta: SnapshotMeta
    data: bytes | None  # None: the SnapshotSink holds the body


@dataclass(slots=True)
class Ready:
    """Pending output, in the order the runtime must handle it (see the module docstring)."""

    # 1. persist durably before anything below leaves the node
    hard_state: HardState | None = None
    # 2. a snapshot from the leader: persist it, restore the state machine, reset the log to it
    snapshot: ReceivedSnapshot | None = None
    # 3. drop log entries with index >= truncate_from, then append entries; fsync; then
    #    core.persisted(entries[-1].index, entries[-1].term)
    truncate_from: int | None = None
    entries: list[Entry] = field(default_factory=list)
    # 4. send only once 1-3 are durable
    messages: list[Message] = field(default_factory=list)
    # 5. apply in order (only entries already persisted locally)
    committed: list[Entry] = field(default_factory=list)
    # 6. linearizable reads that became safe; ctx of reads that cannot be served
    read_states: list[ReadState] = field(default_factory=list)
    dropped_reads: list[int] = field(default_factory=list)


class RaftCore:
    """One Raft node's consensus state. See the module docstring for how to drive it."""

    def __init__(
        self,
        node_id: str,
        config: CoreConfig,
        rng: random.Random,
        snapshots: SnapshotSource,
        *,
        snapshot_sink: SnapshotSink | None = None,
        hard_state: HardState = _NO_HARD_STATE,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
        trace: Callable[[str], None] | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        self._id = node_id
        self._cfg = config
        self._rng = rng
        self._snapshots = snapshots
        self._sink = snapshot_sink if snapshot_sink is not None else MemorySink()
        self._trace = trace  # what the core does, line by line (see "Tracing" above)

        self._term = hard_state.term
        self._vote = hard_state.vote
        self._role = Role.FOLLOWER
        self._leader: str | None = None

        self._log = RaftLog(snapshot, entries)
        commit = self._log.commit
        # the hard state last handed out in a Ready (or recovered): Ready.hard_state is the
        # current one when it differs
        self._saved_hard_state = hard_state

        self._configs = Configurations(
            commit, snapshot.config if snapshot else _EMPTY_CONFIG, self._log.entries
        )
        # this node's view of the latest configuration (_apply_latest_config)
        self._config = _EMPTY_CONFIG
        self._voters: list[str] = []
        self._members: set[str] = set()
        self._is_voter = False
        self._sole_voter = False

        # timers
        self._election_elapsed = 0
        self._randomized_timeout = 0
        self._contact_elapsed = 0  # ticks since a leader last spoke to us
        # the highest commit index a leader announced to us: committed entries stay committed,
        # so any value a leader sent is a lower bound of the cluster's commit index
        self._leader_commit = self._log.commit
        # the term of the leader whose append last told us its commit index; 0 when none did
        # since this node started, or since a leader sent it a snapshot (which does not say)
        self._leader_commit_term = 0
        self._leader_unreachable = False
        self._heartbeat_elapsed = 0
        self._leader_ticks = 0  # the leader's clock, for check-quorum

        # candidate
        self._votes: dict[str, bool] = {}

        # leader
        self._progress: dict[str, Progress] = {}
        self._term_start = 0  # index of this leader's NOOP
        self._transferee: str | None = None
        self._transfer_elapsed = 0
        self._timeout_now_sent = False
        self._reads = ReadIndexQueue()
        self._needs_flush = False

        # follower
        # started empty: no vote, no campaign until promoted (konsul/raft/catchup.py)
        self._catchup = CatchUp(hard_state.term, self._log.last_index)
        self._forwarded_reads = ForwardedReads()  # reads waiting for the leader's answer
        self._ticks = 0
        # the snapshot a leader is sending us, and how many of its bytes the sink holds
        self._incoming: tuple[SnapshotMeta, int] | None = None

        # output
        self._msgs: list[Message] = []
        self._received: ReceivedSnapshot | None = None
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[int] = []

        self._handlers: dict[type, Callable[[Any], None]] = {
            AppendEntries: self._on_append_entries,
            AppendResponse: self._on_append_response,
            PreVote: self._on_pre_vote,
            PreVoteResponse: self._on_pre_vote_response,
            RequestVote: self._on_request_vote,
            VoteResponse: self._on_vote_response,
            InstallSnapshot: self._on_install_snapshot,
            SnapshotResponse: self._on_snapshot_response,
            TimeoutNow: self._on_timeout_now,
            ReadIndexRequest: self._on_read_index_request,
            ReadIndexResponse: self._on_read_index_response,
        }
        self._apply_latest_config()
        self._reset_election_timer()
        self._maybe_standalone()

    # ------------------------------------------------------------------ observation

    @property
    def node_id(self) -> str:
        return self._id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> str | None:
        return self._vote

    @property
    def leader_id(self) -> str | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._log.commit

    @property
    def last_index(self) -> int:
        log = self._log
        return log.base + len(log.entries)  # (log.last_index, without a second call)

    @property
    def last_term(self) -> int:
        return self._log.last_term

    @property
    def first_index(self) -> int:
        return self._log.first_index

    @property
    def configuration(self) -> Configuration:
        return self._config

    @property
    def committed_configuration(self) -> Configuration:
        return self._configs.committed

    @property
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._log.snapshot

    @property
    def is_empty(self) -> bool:
        return self._term == 0 and not self._log.entries and self._log.snapshot is None

    @property
    def catching_up(self) -> bool:
        """Started empty and not promoted since: this node neither votes nor campaigns.

        A member the configuration lists as a voter while this is true (a lost volume that the
        leader reached before the operator looked) must be removed and added again.
        """
        return self._catchup.active

    @property
    def config_change_blocker(self) -> str | None:
        """Why a leader would refuse a configuration change now, for a reason that passes by
        itself: a leadership transfer under way, its term's first entry not committed yet, or
        another change not committed yet. None otherwise (and on a follower, which refuses
        every change). A runtime may wait for it to clear before it proposes a change."""
        if self._role is not Role.LEADER:
            return None
        if self._transferee is not None:
            return "leadership transfer in progress"
        if self._log.commit < self._term_start:
            # a new leader must commit an entry of its term before changing the configuration
            return "leader has not committed an entry of its term yet"
        if self._configs.pending:
            return "a configuration change is already in progress"
        return None

    @property
    def transfer_target(self) -> str | None:
        return self._transferee

    @property
    def lead_transferee(self) -> str | None:
        return self._transferee

    @property
    def ticks_since_leader_contact(self) -> int:
        return 0 if self._role is Role.LEADER else self._contact_elapsed

    @property
    def leader_commit(self) -> int:
        """The cluster's commit index as this node knows it: its own on a leader; on a
        follower the highest one a leader announced, which may be past the entries it holds
        (its own ``commit_index`` is not). How far behind a member is, it reads here."""
        commit = self._log.commit
        return commit if self._role is Role.LEADER else max(commit, self._leader_commit)

    @property
    def knows_leader_commit(self) -> bool:
        """Whether ``leader_commit`` is what the current leader announced: always on a leader;
        on a follower once an append of this term came since it started or was last sent a
        snapshot. Before that it is only what this node holds, however far behind it is."""
        return self._role is Role.LEADER or self._leader_commit_term == self._term

    def active_peers(self) -> list[str]:
        """On a leader, the other members that answered within the leader lease (those it
        can count on to be up); empty on any other node."""
        if self._role is not Role.LEADER:
            return []
        since = self._leader_ticks - self._cfg.leader_lease_ticks
        return [pid for pid, pr in self._progress.items() if pr.last_active > since]

    def match_index(self, peer_id: str) -> int:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader)
        if peer_id == self._id:
            return self._self_match_index()
        pr = self._progress.get(peer_id)
        return pr.match if pr else 0

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` if the log (or its snapshot) still knows it."""
        return self._log.term_at(index)

    # ------------------------------------------------------------------ safety hooks

    def _may_commit(self, index: int) -> bool:
        """Figure 8: a leader commits by counting replicas only entries of its own term."""
        return self._log.term_at(index) == self._term

    def _log_is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: the candidate's log is at least as up to date as ours."""
        my_term = self.last_term
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index)

    def _self_match_index(self) -> int:
        """The leader's own log counts towards a majority only once it is durable."""
        return self._log.persisted

    def _applicable_index(self) -> int:
        """Ready.committed never reaches past what is durable locally."""
        log = self._log
        return min(log.commit, log.persisted)

    def _quorum_index(self) -> int:
        """The highest index a majority of the voters (of the latest configuration) stores."""
        progress = self._progress
        me = self._id
        return quorum_index(
            [
                self._self_match_index() if v == me else (progress[v].match if v in progress else 0)
                for v in self._voters
            ]
        )

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self._ticks += 1
        if self._role is Role.LEADER:
            self._tick_leader()
            return
        if self._forwarded_reads:
            self._dropped_reads += self._forwarded_reads.expire(self._ticks)
        self._contact_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            if self._may_campaign():
                self._campaign(pre=self._cfg.pre_vote)
            else:
                self._reset_election_timer()

    def step(self, msg: Message) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None or msg.dst != self._id:
            return
        if self._trace is not None:
            self._trace(describe_message(msg))
        src = msg.src
        t = type(msg)
        # Reads from servers outside our configuration are ignored. Votes are not (Raft
        # dissertation 4.1): our configuration may be stale, and a voter we do not know of yet
        # may need our vote. A removed server that keeps running cannot disrupt all the same:
        # its pre-votes are refused while we hear from a leader, and its RequestVotes are
        # ignored then too (check-quorum), since a non-member cannot claim a leadership
        # transfer. A node that started empty refuses votes by itself (konsul/raft/catchup.py).
        if t is ReadIndexRequest and src not in self._members:
            return
        if (t is PreVote or t is RequestVote) and self.is_empty:
            return  # no log, no configuration: nothing to say
        term = msg.term
        if term > self._term:
            if isinstance(msg, PreVote) or (isinstance(msg, PreVoteResponse) and msg.granted):
                pass  # pre-votes never move terms
            elif (
                isinstance(msg, RequestVote)
                and not (msg.transfer and src in self._members)
                and self._cfg.check_quorum
                and self._in_lease()
            ):
                return  # leader stickiness: we heard from a live leader recently
            else:
                leader = src if (t is AppendEntries or t is InstallSnapshot) else None
                self._become_follower(term, leader)
        elif term < self._term:
            self._on_stale_term(msg)
            return
        handler(msg)
        if self._sole_voter and self._role is not Role.LEADER:
            self._maybe_standalone()

    def propose(self, data: bytes) -> tuple[int, int]:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader)
        if self._transferee is not None:
            raise ProposalRejected("leadership transfer in progress")
        entries = self._log.entries
        index = self._log.base + len(entries) + 1  # (the hot path: no property call)
        entries.append(make_entry(index, self._term, _COMMAND, data))
        self._needs_flush = True
        return index, self._term

    def propose_many(self, datas: Sequence[bytes]) -> tuple[int, int]:
        """Append several commands at once: (index of the first, term); they get consecutive
        indexes. Same errors as ``propose``; cheaper per command for a runtime that batches."""
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader)
        if self._transferee is not None:
            raise ProposalRejected("leadership transfer in progress")
        entries = self._log.entries
        first = self._log.base + len(entries) + 1
        term = self._term
        entries.extend(
            [make_entry(i, term, _COMMAND, d) for i, d in enumerate(datas, first)]
        )
        self._needs_flush = True
        return first, term

    def propose_add(self, member: Member) -> tuple[int, int]:
        self._check_config_change()
        return self._append_config(with_learner(self._config, member))

    def propose_remove(self, node_id: str) -> tuple[int, int]:
        self._check_config_change()
        return self._append_config(without(self._config, node_id))

    def transfer_leadership(self, target: str | None) -> str:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader)
        if target is None:
            best: tuple[int, str] | None = None
            for v in self._voters:
                if v != self._id and v in self._progress:
                    match = self._progress[v].match
                    if best is None or match > best[0]:
                        best = (match, v)
            if best is None:
                raise ProposalRejected("no other voter to transfer leadership to")
            target = best[1]
        if target == self._id:
            raise ProposalRejected("this node is already the leader")
        if target not in self._voters or target not in self._progress:
            raise ProposalRejected(f"{target} is not a voter")
        if self._transferee == target:
            return target
        self._say(f"transfers leadership to {target}")
        self._transferee = target
        self._transfer_elapsed = 0
        self._timeout_now_sent = False
        self._maybe_send_timeout_now()
        self._needs_flush = True
        return target

    def read_index(self, ctx: int) -> None:
        if self._role is Role.LEADER:
            self._leader_read(self._id, ctx)
        elif self._leader is not None:
            self._forwarded_reads.add(ctx, self._ticks + self._cfg.election_timeout_ticks)
            self._msgs.append(ReadIndexRequest(self._id, self._leader, self._term, ctx))
        else:
            self._dropped_reads.append(ctx)

    def bootstrap(self, member: Member) -> None:
        if not self.is_empty:
            raise ProposalRejected("node is not empty")
        if member.id != self._id:
            raise ProposalRejected("the bootstrap member must be this node")
        config = Configuration((Member(member.id, member.address, True, member.http_address),))
        # We vote for ourselves in term 1, write the configuration as entry 1 and, as the only
        # voter, win at once.
        self._catchup.active = False
        self._term = 1
        self._vote = self._id
        self._role = Role.CANDIDATE
        self._votes = {self._id: True}
        self._log.entries.append(Entry(1, 1, _CONFIG, encode_configuration(config)))
        self._configs.append(1, config)
        self._apply_latest_config()
        self._maybe_standalone()

    def compact(self, meta: SnapshotMeta, trailing: int) -> None:
        self._log.compact(meta, trailing)

    def peer_unreachable(self, peer_id: str) -> None:
        if self._role is Role.LEADER:
            pr = self._progress.get(peer_id)
            if pr is not None and pr.state is ProgressState.REPLICATE:
                pr.become_probe()
                if self._trace is not None:
                    self._trace_progress(peer_id, pr, ProgressState.REPLICATE)
            return
        if peer_id != self._leader:
            return
        self._leader_unreachable = True
        # Start a pre-vote soon. Every follower hears of a crashed leader at the same moment, so
        # their pre-votes are spaced by rank (the survivors in id order, a slot apart, with a
        # little jitter), not left to chance: two pre-candidates at once grant each other, both
        # campaign, and the split vote costs an election timeout. A survivor that cannot win (an
        # older log) delays the next one by a slot.
        slot = max(1, self._cfg.heartbeat_timeout_ticks // 8)
        survivors = sorted(v for v in self._voters if v != peer_id)
        rank = survivors.index(self._id) if self._id in survivors else len(survivors)
        delay = 1 + rank * slot + self._rng.randrange(max(1, slot // 4))
        remaining = self._randomized_timeout - self._election_elapsed
        if delay < remaining:
            self._election_elapsed = self._randomized_timeout - delay

    def persisted(self, index: int, term: int) -> None:
        if self._log.persisted_to(index, term) and self._role is Role.LEADER:
            self._maybe_commit()

    def applied(self, index: int) -> None:
        if index > self._log.applied:
            self._log.applied = index

    # ------------------------------------------------------------------ output

    def has_ready(self) -> bool:
        if self._needs_flush:
            self._flush()
        log = self._log
        return bool(
            self._msgs
            or log.unstable_from <= log.base + len(log.entries)  # (log.has_unstable(), inline)
            or self._applicable_index() > log.applying
            or self._hard_state_changed()
            or self._received is not None
            or log.truncate_from is not None
            or self._read_states
            or self._dropped_reads
        )

    def ready(self) -> Ready:
        if self._needs_flush:
            self._flush()
        rd = Ready()
        held: list[Message] = []
        if self._hard_state_changed():
            rd.hard_state = self._saved_hard_state = HardState(self._term, self._vote)
            if self._role is Role.LEADER and self._msgs:
                # A leader's replication messages never share a Ready with a hard-state change
                # (a single voter becomes leader in the same step as its term bump), so a
                # runtime may send them before it has persisted that Ready.
                held = [m for m in self._msgs if isinstance(m, _REPLICATION)]
                if held:
                    self._msgs = [m for m in self._msgs if not isinstance(m, _REPLICATION)]
        if self._received is not None:
            rd.snapshot = self._received
            self._received = None
        log = self._log
        rd.truncate_from = log.truncate_from
        log.truncate_from = None
        if log.has_unstable():
            rd.entries = log.take_unstable()
        if self._msgs:
            rd.messages = self._msgs
        self._msgs = held
        hi = self._applicable_index()
        if hi > log.applying:
            rd.committed = log.take_committed(hi)
        if self._read_states:
            rd.read_states = self._read_states
            self._read_states = []
        if self._dropped_reads:
            rd.dropped_reads = self._dropped_reads
            self._dropped_reads = []
        if self._trace is not None:
            for line in describe_ready(rd):
                self._trace(line)
        return rd

    def _say(self, text: str) -> None:
        """Trace a state change (on hot paths callers test ``self._trace`` first: the text
        costs more than the test)."""
        if self._trace is not None:
            self._trace(f"{self._id} {text}")

    def _hard_state_changed(self) -> bool:
        """Term or vote differ from the last hard state handed out (a node catching up holds
        its own back: konsul/raft/catchup.py, step 7)."""
        saved = self._saved_hard_state
        return (self._term != saved.term or self._vote != saved.vote) and not self._catchup.active

    # ------------------------------------------------------------------ roles and elections

    def _reset_election_timer(self) -> None:
        self._election_elapsed = 0
        t = (
            self._cfg.heartbeat_timeout_ticks
            if self._role is Role.FOLLOWER
            else self._cfg.election_timeout_ticks
        )
        t = max(1, t)
        self._randomized_timeout = t + self._rng.randrange(t)

    def _may_campaign(self) -> bool:
        return self._is_voter and not self._catchup.active

    def _promoted(self) -> None:
        """Our promotion reached us: we vote again, and our term is durable again with the
        leader that promoted us as our vote (konsul/raft/catchup.py, steps 4 and 7)."""
        self._say("holds its promotion: votes again")
        self._catchup.active = False
        if self._vote is None and self._leader is not None:
            self._vote = self._leader

    def _in_lease(self) -> bool:
        """We heard from a live leader within the heartbeat timeout (or we are that leader)."""
        if self._role is Role.LEADER:
            return True
        return (
            self._leader is not None
            and not self._leader_unreachable
            and self._contact_elapsed < self._cfg.heartbeat_timeout_ticks
        )

    def _become_follower(self, term: int, leader: str | None) -> None:
        if self._trace is not None and (
            self._role is not Role.FOLLOWER or term != self._term or leader != self._leader
        ):
            self._say(f"became follower in term {term}, leader {leader or 'unknown'}")
        if term > self._term:
            self._term = term
            self._vote = None
        if self._role is Role.LEADER:
            self._step_down_leader()
        if leader != self._leader:
            self._drop_forwarded_reads()
            self._leader_unreachable = False
        self._role = Role.FOLLOWER
        self._leader = leader
        self._votes = {}
        self._reset_election_timer()

    def _step_down_leader(self) -> None:
        for src, ctx in self._reads.drain():
            self._refuse_read(src, ctx)
        self._progress = {}
        self._transferee = None
        self._needs_flush = False

    def _drop_forwarded_reads(self) -> None:
        if self._forwarded_reads:
            self._dropped_reads += self._forwarded_reads.drop_all()

    def _campaign(self, *, pre: bool, transfer: bool = False) -> None:
        if self._role is Role.LEADER:
            return
        if pre and not self._sole_voter:
            self._say(f"became pre-candidate in term {self._term}")
            self._role = Role.PRE_CANDIDATE
            self._votes = {self._id: True}
            if self._leader is not None:
                self._drop_forwarded_reads()
            self._leader = None
            self._reset_election_timer()
            msg_term = self._term + 1
            last_index, last_term = self.last_index, self.last_term
            for v in self._voters:
                if v != self._id:
                    self._msgs.append(PreVote(self._id, v, msg_term, last_index, last_term))
            return
        self._term += 1
        self._vote = self._id
        self._say(f"became candidate in term {self._term}")
        self._role = Role.CANDIDATE
        self._votes = {self._id: True}
        self._drop_forwarded_reads()
        self._leader = None
        self._reset_election_timer()
        if self._sole_voter:
            self._become_leader()
            return
        last_index, last_term = self.last_index, self.last_term
        for v in self._voters:
            if v != self._id:
                self._msgs.append(
                    RequestVote(self._id, v, self._term, last_index, last_term, transfer)
                )

    def _poll(self, src: str, granted: bool) -> None:
        if src not in self._voters:
            return
        self._votes.setdefault(src, granted)
        yes = sum(1 for g in self._votes.values() if g)
        result = vote_result(yes, len(self._votes) - yes, len(self._voters))
        if result is VoteResult.WON:
            if self._role is Role.PRE_CANDIDATE:
                self._campaign(pre=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self._become_follower(self._term, None)

    def _maybe_standalone(self) -> None:
        """A configuration whose only voter is this node: lead at once, no timeout."""
        if not self._sole_voter or self._role is Role.LEADER or self._catchup.active:
            return
        if self._role is Role.CANDIDATE and self._vote == self._id:
            self._become_leader()
        else:
            self._campaign(pre=False)

    def _become_leader(self) -> None:
        self._say(f"became leader in term {self._term}")
        self._role = Role.LEADER
        self._leader = self._id
        self._votes = {}
        self._transferee = None
        self._heartbeat_elapsed = 0
        self._leader_ticks = 0
        self._leader_unreachable = False
        nxt = self.last_index + 1
        self._progress = {
            m.id: Progress(nxt, 0) for m in self._config.members if m.id != self._id
        }
        index = nxt
        self._log.entries.append(Entry(index, self._term, EntryKind.NOOP))
        self._term_start = index
        self._needs_flush = True
        self._maybe_commit()

    # ------------------------------------------------------------------ leader

    def _tick_leader(self) -> None:
        cfg = self._cfg
        self._heartbeat_elapsed += 1
        self._leader_ticks += 1
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= cfg.election_timeout_ticks:
                self._say(f"gave up the leadership transfer to {self._transferee}")
                self._transferee = None  # the target did not take over
        if cfg.check_quorum and not self._quorum_active():
            self._say("heard from no majority within the leader lease")
            self._become_follower(self._term, None)
            return
        if self._heartbeat_elapsed >= cfg.commit_ticks:
            self._heartbeat_elapsed = 0
            self._heartbeat(periodic=True)
            self._maybe_promote()  # also here: a learner may have caught up while we waited

    def _quorum_active(self) -> bool:
        """A majority of the voters spoke to us within the leader lease."""
        voters = self._voters
        since = self._leader_ticks - self._cfg.leader_lease_ticks
        progress = self._progress
        active = 0
        for v in voters:
            if v == self._id:
                active += 1
            else:
                pr = progress.get(v)
                if pr is not None and pr.last_active > since:
                    active += 1
        return active >= majority(len(voters))

    def _heartbeat(self, *, periodic: bool) -> None:
        """Empty AppendEntries at each follower's match point (they always fit its log)."""
        cfg = self._cfg
        stall_limit = max(2 * cfg.commit_ticks, cfg.heartbeat_timeout_ticks // 2)
        for pid, pr in self._progress.items():
            state = pr.state
            if state is ProgressState.SNAPSHOT:
                if periodic:
                    pr.snap_elapsed += cfg.commit_ticks
                    if pr.snap_elapsed >= stall_limit:  # chunk or its answer was lost: resend
                        self._send_snapshot_chunk(pid, pr)
                continue
            if periodic:
                if state is ProgressState.PROBE:
                    pr.probe_sent = False  # the flush sends the probe again (it was maybe lost)
                    continue
                if pr.inflight:
                    pr.stall += cfg.commit_ticks
                    if pr.stall >= stall_limit:  # tail of the pipeline lost: probe again
                        pr.become_probe()
                        if self._trace is not None:
                            self._trace_progress(pid, pr, state)
                        continue
            match = pr.match
            self._msgs.append(
                AppendEntries(
                    self._id, pid, self._term, match, self._log.term_at(match) or 0, (),
                    self._log.commit, self._reads.round,
                )
            )
        self._needs_flush = True

    def _flush(self) -> None:
        """Send what proposals and acknowledgements made sendable, in as few messages as can be."""
        self._needs_flush = False
        if self._role is not Role.LEADER:
            return
        if self._reads.unsent:
            self._reads.start_round(self._log.commit)
            self._heartbeat(periodic=False)
            self._needs_flush = False
        last = self.last_index
        max_inflight = self._cfg.max_inflight
        max_inflight_bytes = self._cfg.max_inflight_bytes
        for pid, pr in self._progress.items():
            state = pr.state
            if state is ProgressState.REPLICATE:
                inflight = pr.inflight
                while pr.next <= last and not inflight.full(max_inflight, max_inflight_bytes):
                    if not self._send_entries(pid, pr):
                        break
            elif state is ProgressState.PROBE and not pr.probe_sent:
                pr.probe_sent = True
                self._send_entries(pid, pr)

    def _send_entries(self, pid: str, pr: Progress) -> bool:
        prev = pr.next - 1
        prev_term = self._log.term_at(prev)
        if prev_term is None:
            self._start_snapshot(pid, pr)
            return False
        cfg = self._cfg
        entries, size = self._log.slice(prev, cfg.max_append_entries, cfg.max_append_bytes)
        self._msgs.append(
            AppendEntries(
                self._id, pid, self._term, prev, prev_term, entries, self._log.commit,
                self._reads.round,
            )
        )
        if entries:
            pr.sent_entries(entries[-1].index, size)
        return True

    def _start_snapshot(self, pid: str, pr: Progress) -> None:
        meta = self._log.snapshot
        if meta is None:
            return  # cannot happen: the log is only compacted behind a snapshot
        before = pr.state
        pr.become_snapshot(meta, self._snapshots.snapshot_size(meta))
        if self._trace is not None:
            self._trace_progress(pid, pr, before)
        self._send_snapshot_chunk(pid, pr)

    def _send_snapshot_chunk(self, pid: str, pr: Progress) -> None:
        meta = pr.snap_meta
        latest = self._log.snapshot
        if meta is None or (latest is not None and latest.index > meta.index):
            # a newer snapshot replaced it (the old one may be pruned): start over with that
            assert latest is not None
            meta = latest
            pr.switch_snapshot(latest, self._snapshots.snapshot_size(latest))
        pr.snap_elapsed = 0
        offset = pr.snap_offset
        size = max(0, min(self._cfg.snapshot_chunk_bytes, pr.snap_size - offset))
        data = self._snapshots.read_snapshot_chunk(meta, offset, size) if size else b""
        done = offset + len(data) >= pr.snap_size
        self._msgs.append(InstallSnapshot(self._id, pid, self._term, meta, offset, data, done))

    def _on_append_response(self, m: AppendResponse) -> None:
        if self._role is not Role.LEADER:
            return
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.last_active = self._leader_ticks
        if m.read_ctx > pr.read_ack:
            pr.read_ack = m.read_ctx
            if self._reads.pending:
                self._check_reads()
        if not m.success:
            self._on_append_rejected(pr, m)
            return
        before = pr.state
        # (a confused peer cannot overreach our log)
        advanced = pr.maybe_update(min(m.match_index, self.last_index))
        if self._trace is not None:
            self._trace_progress(m.src, pr, before)
        if advanced:
            if m.src in self._voters:
                self._maybe_commit()
            else:
                self._maybe_promote()
            if m.src == self._transferee:
                self._maybe_send_timeout_now()
        self._needs_flush = True

    def _on_append_rejected(self, pr: Progress, m: AppendResponse) -> None:
        hint, _ = self._log.find_conflict_by_term(
            min(m.conflict_index, self.last_index), m.conflict_term
        )
        before = pr.state
        if pr.maybe_decrease_to(m.reject_index, hint):
            if self._trace is not None:
                self._trace_progress(m.src, pr, before, moved=True)
            self._needs_flush = True

    def _trace_progress(
        self, pid: str, pr: Progress, before: ProgressState, *, moved: bool = False
    ) -> None:
        if pr.state is not before or moved:
            self._say(
                f"progress {pid}: {before.name.lower()} -> {pr.state.name.lower()}, "
                f"match={pr.match} next={pr.next}"
            )

    def _maybe_commit(self) -> None:
        index = self._quorum_index()
        if index > self._log.commit and self._may_commit(index):
            self._log.commit = index
            self._on_commit_advanced()

    def _on_commit_advanced(self) -> None:
        if self._trace is not None:
            self._say(f"committed through {self._log.commit}")
        configs = self._configs
        configs.commit_to(self._log.commit)
        if self._role is not Role.LEADER:
            return
        if self._reads.waiting_commit and self._log.commit >= self._term_start:
            for src, ctx in self._reads.take_waiting_commit():
                self._leader_read(src, ctx)
        if not self._is_voter and not configs.pending:
            self._leave_after_removal()
            return
        self._maybe_promote()

    def _leave_after_removal(self) -> None:
        """Our removal committed: hand over to the most caught-up voter and step down."""
        self._say("was removed: steps down")
        last = self.last_index
        for v in self._voters:
            pr = self._progress.get(v)
            if pr is not None and pr.match == last:
                self._msgs.append(TimeoutNow(self._id, v, self._term))
                break
        self._become_follower(self._term, None)

    def _maybe_promote(self) -> None:
        """Promote a caught-up non-voter (one configuration change at a time)."""
        if (
            self._role is not Role.LEADER
            or self._transferee is not None
            or self._configs.pending
            or self._log.commit < self._term_start
        ):
            return
        for m in self._config.members:
            if not m.voter:
                pr = self._progress.get(m.id)
                if pr is not None and pr.match >= self._log.commit:
                    self._append_config(with_voter(self._config, m.id))
                    return

    def _check_config_change(self) -> None:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._leader)
        reason = self.config_change_blocker
        if reason is not None:
            raise ProposalRejected(reason)

    def _append_config(self, config: Configuration) -> tuple[int, int]:
        index = self.last_index + 1
        self._log.entries.append(Entry(index, self._term, _CONFIG, encode_configuration(config)))
        self._configs.append(index, config)
        self._apply_latest_config()
        self._needs_flush = True
        return index, self._term

    def _apply_latest_config(self) -> None:
        """The latest configuration in the log takes effect as soon as it is appended."""
        config = self._configs.latest
        if self._trace is not None and config != self._config:
            self._say(f"configuration {describe_config(config)}")
        self._config = config
        self._voters = config.voters()
        self._members = {m.id for m in config.members}
        self._is_voter = self._id in self._voters
        self._sole_voter = self._voters == [self._id]
        if self._role is not Role.LEADER:
            return
        progress = self._progress
        nxt = self.last_index + 1
        for mid in self._members:
            if mid != self._id and mid not in progress:
                progress[mid] = Progress(nxt, self._leader_ticks)
        for mid in [p for p in progress if p not in self._members]:
            del progress[mid]
        if self._transferee is not None and self._transferee not in self._voters:
            self._transferee = None
        self._maybe_commit()
        if self._reads.pending:
            self._check_reads()

    def _maybe_send_timeout_now(self) -> None:
        target = self._transferee
        if target is None or self._timeout_now_sent:
            return
        pr = self._progress.get(target)
        if pr is not None and pr.match == self.last_index:
            self._timeout_now_sent = True
            self._msgs.append(TimeoutNow(self._id, target, self._term))

    def _on_snapshot_response(self, m: SnapshotResponse) -> None:
        if self._role is not Role.LEADER:
            return
        pr = self._progress.get(m.src)
        if pr is None:
            return
        pr.last_active = self._leader_ticks
        if m.done:
            if pr.snapshot_reached(m.index) and m.src in self._voters:
                self._maybe_commit()
            if pr.state is ProgressState.SNAPSHOT:
                pr.become_probe()
                if self._trace is not None:
                    self._trace_progress(m.src, pr, ProgressState.SNAPSHOT)
                self._needs_flush = True
            return
        meta = pr.snap_meta
        if pr.state is ProgressState.SNAPSHOT and meta is not None and meta.index == m.index:
            offset = min(m.next_offset, pr.snap_size)
            if offset == pr.snap_offset:
                # The chunk it asks for is already on its way: this answers a chunk sent twice
                # (resent after a stall, or queued while it was away). Sending again would run
                # a second stream of every later chunk (a lost one is resent on the stall timer).
                return
            pr.snap_offset = offset
            self._send_snapshot_chunk(m.src, pr)

    # ------------------------------------------------------------------ reads

    def _leader_read(self, src: str, ctx: int) -> None:
        if self._log.commit < self._term_start:
            self._reads.waiting_commit.append((src, ctx))  # our commit index may lag
        elif self._sole_voter:
            self._answer_read(src, ctx, self._log.commit)
        else:
            self._reads.unsent.append((src, ctx))
            self._needs_flush = True

    def _check_reads(self) -> None:
        """Answer the reads whose heartbeat round a majority has echoed."""
        reads = self._reads
        progress = self._progress
        echoed = quorum_index(
            [
                reads.round if v == self._id else (progress[v].read_ack if v in progress else 0)
                for v in self._voters
            ]
        )
        for src, ctx, index in reads.confirmed(echoed):
            self._answer_read(src, ctx, index)

    def _answer_read(self, src: str, ctx: int, index: int) -> None:
        if src == self._id:
            self._read_states.append(ReadState(ctx, index))
        else:
            self._msgs.append(ReadIndexResponse(self._id, src, self._term, ctx, index))

    def _refuse_read(self, src: str, ctx: int) -> None:
        if src == self._id:
            self._dropped_reads.append(ctx)
        else:
            self._msgs.append(ReadIndexResponse(self._id, src, self._term, ctx, 0))

    def _on_read_index_request(self, m: ReadIndexRequest) -> None:
        if self._role is Role.LEADER:
            pr = self._progress.get(m.src)
            if pr is not None:
                pr.last_active = self._leader_ticks
            self._leader_read(m.src, m.ctx)
        else:
            self._msgs.append(ReadIndexResponse(self._id, m.src, self._term, m.ctx, 0))

    def _on_read_index_response(self, m: ReadIndexResponse) -> None:
        if not self._forwarded_reads.answered(m.ctx):
            return
        if m.index > 0:
            self._read_states.append(ReadState(m.ctx, m.index))
        else:
            self._dropped_reads.append(m.ctx)

    # ------------------------------------------------------------------ follower / voter

    def _on_stale_term(self, msg: Message) -> None:
        """A message from an older term: tell a stale leader or pre-candidate the news."""
        t = type(msg)
        if t is AppendEntries or t is InstallSnapshot:
            self._msgs.append(AppendResponse(self._id, msg.src, self._term, False))
        elif t is PreVote:
            self._msgs.append(PreVoteResponse(self._id, msg.src, self._term, False))
        elif t is RequestVote:
            self._msgs.append(VoteResponse(self._id, msg.src, self._term, False))
        elif isinstance(msg, ReadIndexRequest):
            self._msgs.append(ReadIndexResponse(self._id, msg.src, self._term, msg.ctx, 0))

    def _heard_from_leader(self, leader: str) -> None:
        self._contact_elapsed = 0
        self._election_elapsed = 0
        self._leader_unreachable = False
        if self._role is not Role.FOLLOWER or self._leader != leader:
            self._become_follower(self._term, leader)
        if self._vote is None:
            # the leader as our vote in its term: one hard-state write per term, and a member
            # that loses its disk cannot vote twice in it (konsul/raft/catchup.py, step 8)
            self._vote = leader

    def _on_pre_vote(self, m: PreVote) -> None:
        grant = (
            m.term > self._term
            and not self._catchup.active
            and not self._in_lease()
            and self._log_is_up_to_date(m.last_log_index, m.last_log_term)
        )
        self._msgs.append(
            PreVoteResponse(self._id, m.src, m.term if grant else self._term, grant)
        )

    def _on_pre_vote_response(self, m: PreVoteResponse) -> None:
        if self._role is not Role.PRE_CANDIDATE:
            return
        if m.granted:
            if m.term == self._term + 1:
                self._poll(m.src, True)
        else:
            self._poll(m.src, False)

    def _on_request_vote(self, m: RequestVote) -> None:
        can_vote = self._vote == m.src or (self._vote is None and self._leader is None)
        grant = (
            can_vote
            and not self._catchup.active
            and self._log_is_up_to_date(m.last_log_index, m.last_log_term)
        )
        if grant:
            self._vote = m.src
            self._election_elapsed = 0
        self._msgs.append(VoteResponse(self._id, m.src, self._term, grant))

    def _on_vote_response(self, m: VoteResponse) -> None:
        if self._role is Role.CANDIDATE:
            self._poll(m.src, m.granted)

    def _on_timeout_now(self, m: TimeoutNow) -> None:
        if self._role is not Role.LEADER and self._may_campaign():
            self._campaign(pre=False, transfer=True)

    def _on_append_entries(self, m: AppendEntries) -> None:
        self._heard_from_leader(m.src)
        if self._catchup.active:
            # every append shows a position in the leader's log (catchup.py, step 5b)
            self._catchup.note_shown(m.term, m.prev_index)
        # Committed in the cluster whether or not our log matches this append's
        if m.commit > self._leader_commit:
            self._leader_commit = m.commit
        self._leader_commit_term = m.term
        prev = m.prev_index
        entries: Sequence[Entry] = m.entries
        commit = self._log.commit
        if prev < commit:
            # Entries through our commit index are committed: they match the leader's.
            skip = min(commit - prev, len(entries))
            if skip:
                self._check_committed(entries[skip - 1])
            entries = entries[skip:]
            prev += skip
        elif self._log.term_at(prev) != m.prev_term:
            hint_index, hint_term = self._log.find_conflict_by_term(
                min(prev, self.last_index), m.prev_term
            )
            self._msgs.append(
                AppendResponse(
                    self._id, m.src, self._term, False, 0, prev, hint_index, hint_term, m.read_ctx
                )
            )
            return
        if entries:
            self._merge(entries)
        last_new = prev + len(entries)
        if m.commit > commit:
            new_commit = min(m.commit, last_new)
            if new_commit > commit:
                self._log.commit = new_commit
                self._on_commit_advanced()
        self._msgs.append(
            AppendResponse(self._id, m.src, self._term, True, last_new, 0, 0, 0, m.read_ctx)
        )

    def _check_committed(self, entry: Entry) -> None:
        """A leader's entry at an index we hold as committed must be ours (log matching)."""
        term = self._log.term_at(entry.index)
        if term is not None and term != entry.term:
            raise RaftSafetyError(
                f"{self._id}: the leader's entry {entry.index}@{entry.term} conflicts with "
                f"committed entry {entry.index}@{term}"
            )

    def _merge(self, entries: Sequence[Entry]) -> None:
        """Append entries (the first follows a matching entry), truncating at a conflict."""
        entries = self._log.new_entries(entries)
        if not entries:
            return
        if entries[0].index <= self._log.last_index:
            self._truncate(entries[0].index)
        self._append(entries)

    def _append(self, entries: Sequence[Entry]) -> None:
        self._log.append(entries)
        changed = False
        for e in entries:
            if e.kind is _CONFIG:
                config = decode_configuration(e.data)
                if self._catchup.active:
                    # our promotion? (konsul/raft/catchup.py, step 5)
                    before = self._configs.latest.get(self._id)
                    if self._catchup.promotes(self._id, before, e.index, e.term, config):
                        self._promoted()
                    self._is_voter = self._id in config.voters()
                self._configs.append(e.index, config)
                changed = True
        if changed:
            self._apply_latest_config()

    def _truncate(self, index: int) -> None:
        commit = self._log.commit
        if index <= commit:
            raise RaftSafetyError(
                f"{self._id}: asked to overwrite committed entry {index} (commit {commit})"
            )
        self._log.truncate(index)
        if self._configs.truncate(index):
            self._apply_latest_config()

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        self._heard_from_leader(m.src)
        self._leader_commit_term = 0  # far behind, by how much the next append will say
        meta = m.meta
        if meta.index <= self._log.commit:
            self._incoming = None
            self._snapshot_reply(m.src, meta.index, 0, True)
            return
        if m.offset == 0:
            if self._log.term_at(meta.index) == meta.term:
                # our log already holds the snapshot's last entry: it is committed, keep the log
                self._incoming = None
                self._log.commit = meta.index
                self._on_commit_advanced()
                self._snapshot_reply(m.src, meta.index, 0, True)
                return
            self._incoming = (meta, 0)
            self._sink.begin(meta)
        incoming = self._incoming
        if incoming is None or incoming[0] != meta or m.offset != incoming[1]:
            have = incoming[1] if incoming is not None and incoming[0] == meta else 0
            self._snapshot_reply(m.src, meta.index, have, False)
            return
        self._sink.write(m.data)
        received = incoming[1] + len(m.data)
        if not m.done:
            self._incoming = (meta, received)
            self._snapshot_reply(m.src, meta.index, received, False)
            return
        self._incoming = None
        self._install_snapshot(meta, self._sink.finish())
        self._snapshot_reply(m.src, meta.index, 0, True)

    def _snapshot_reply(self, dst: str, index: int, next_offset: int, done: bool) -> None:
        self._msgs.append(SnapshotResponse(self._id, dst, self._term, index, next_offset, done))

    def _install_snapshot(self, meta: SnapshotMeta, data: bytes | None) -> None:
        """Reset the log to the snapshot (Ready.snapshot tells the runtime to do the same)."""
        self._say(f"installed snapshot {meta.index}@{meta.term}, committed through it")
        self._log.restore(meta)
        self._received = ReceivedSnapshot(meta, data)
        configs = self._configs
        if self._catchup.active:
            # does the snapshot hold our promotion? (konsul/raft/catchup.py, step 6; the log
            # no longer knows the term of our latest configuration entry unless it is the
            # snapshot point: term 0 asks about leaders of every term, the stricter check)
            latest_term = self._log.term_at(configs.latest_index) or 0
            if self._catchup.snapshot_promotes(
                self._id, configs.latest, configs.latest_index, latest_term, meta.config
            ):
                self._promoted()
        configs.reset(meta.index, meta.config)
        self._apply_latest_config()
