"""A simulated cluster: Raft cores driven the way the runtime drives them, on a simulated
clock, network and disk, with clients and an operator, checked by `Checker` as it goes.

`SimNode` is the runtime of one node (the Ready loop of ``konsul/raft/runtime.py``, one Ready at
a time, one fsync per Ready, the fsync completed whenever the simulator decides); `Cluster`
owns the nodes, the network, the clock and the clients, and runs one seed.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from konsul.raft.core import (
    CoreConfig,
    NotLeaderError,
    ProposalRejected,
    RaftCore,
    Ready,
    Role,
)
from konsul.raft.messages import AppendEntries, Message, VoteResponse, decode, encode
from konsul.raft.sim.disk import DiskError, SimDisk
from konsul.raft.sim.invariants import Ack, Checker, Violation
from konsul.raft.sim.model import SimStateMachine, command
from konsul.raft.sim.network import Network
from konsul.raft.sim.trace import Trace
from konsul.raft.types import Entry, EntryKind, HardState, Member, SnapshotMeta
from konsul.storage.snapshots import SnapshotNotFound

CoreFactory = Callable[..., RaftCore]

MS_PER_TICK = 10


@dataclass(slots=True)
class SimConfig:
    """One run's knobs. Timing defaults are the guide's, at 10 ms per tick."""

    nodes: int = 3
    steps: int = 2000  # ticks of the faulty phase
    quiet_limit: int = 3000  # ticks the cluster gets to recover once faults stop
    core: CoreConfig = field(
        default_factory=lambda: CoreConfig(
            heartbeat_timeout_ticks=100,
            election_timeout_ticks=100,
            leader_lease_ticks=50,
            commit_ticks=5,
            max_append_entries=64,
            # small byte limits: a batch is cut by bytes (about 11 writes), and at most about
            # three batches are in flight to a follower, fewer than max_inflight's 8
            max_append_bytes=256,
            max_inflight_bytes=768,
            snapshot_chunk_bytes=16,  # small: every InstallSnapshot takes several chunks
        )
    )
    snapshot_threshold: int = 40  # applied entries between local snapshots
    snapshot_retention: int = 2  # snapshots the store keeps (the guide's default)
    trailing_logs: int = 8
    propose_rate: float = 0.15  # client proposals per tick
    payload_bytes: int = 0  # each write padded with up to this many bytes (0: a few bytes)
    read_rate: float = 0.05  # ReadIndex reads per tick
    wire_rate: float = 0.02  # share of messages round-tripped through the codec
    fault_rate: float = 1.0  # scales how often the nemesis acts (0: fault-free)
    # Overrides of the nemesis' fault weights by kind (see Nemesis), e.g. {"crash_leader": 9}.
    fault_weights: dict[str, float] = field(default_factory=dict)
    disk_loss: bool = True  # whether the nemesis may wipe a disk
    membership: bool = True  # whether the operator adds and removes members
    # Several Readies in flight at once, the leader's AppendEntries sent before its own fsync
    # (etcd's asynchronous storage writes) instead of the runtime's one Ready at a time.
    pipeline: bool = False
    forget_vote: bool = False  # a broken runtime: the vote is not restored on restart
    # The direct Figure 8 check; off, only the consequences (lost or divergent entries) count.
    commitment_rule: bool = True
    trace_keep: int = 40
    trace_digest: bool = False
    trace_echo: bool = False
    trace_messages: bool = False  # also trace every delivered message (replays only: costly)


@dataclass(slots=True)
class RunResult:
    seed: int
    violation: Violation | None
    trace: str
    digest: str
    elections: int
    commits: int
    acked: int
    reads: int
    recovery_ticks: int
    ticks: int
    events: int


class SimSnapshots:
    """The node's snapshot store, as the core's SnapshotSource sees it: like the real store
    with its default retention of 2, an older snapshot is gone (SnapshotNotFound)."""

    __slots__ = ("_disk",)

    def __init__(self, disk: SimDisk) -> None:
        self._disk = disk

    def _data(self, meta: SnapshotMeta) -> bytes:
        for kept, data in self._disk.retained:
            if kept.index == meta.index and kept.term == meta.term:
                return data
        raise SnapshotNotFound(f"snapshot {meta.index}@{meta.term} (pruned by retention)")

    def snapshot_size(self, meta: SnapshotMeta) -> int:
        return len(self._data(meta))

    def read_snapshot_chunk(self, meta: SnapshotMeta, offset: int, size: int) -> bytes:
        return self._data(meta)[offset : offset + size]


@dataclass(slots=True)
class _Read:
    ctx: int
    required: int  # highest index of a write acknowledged before the read began
    index: int = -1  # the read index, once the core gave it


class SimNode:
    """One node's runtime. `core` is None while the process is down."""

    def __init__(self, cluster: Cluster, node_id: str) -> None:
        self.cluster = cluster
        self.id = node_id
        self.address = f"{node_id}:7000"
        self.disk = SimDisk(cluster.cfg.snapshot_retention)
        self.snapshots = SimSnapshots(self.disk)
        self.core: RaftCore | None = None
        self.fsm = SimStateMachine()
        # Readies whose fsync has not completed: (ready, writes it covers, completion tick).
        # The real runtime has at most one; SimConfig.pipeline allows several (etcd-style).
        self.inflight: deque[tuple[Ready, int, int]] = deque()
        self.paused_until = 0
        self.drift = 0  # clock skew: >0 an extra tick every `drift` ticks, <0 one skipped
        self.removed = False  # stopped for good after leaving the configuration
        self.wiped = False  # lost its disk and has not yet rejoined
        self.proposals: dict[int, tuple[int, int]] = {}  # index -> (term, write id)
        self.reads: dict[int, _Read] = {}
        self.waiting_reads: list[_Read] = []
        self.last_snapshot_index = 0
        self.checked_leader_term = 0
        self.leader_term = 0  # the term in which leader_commit was last seen (0: not leader)
        self.leader_commit = 0
        self.incarnation = 0

    @property
    def up(self) -> bool:
        return self.core is not None

    def member(self, voter: bool = False) -> Member:
        return Member(self.id, self.address, voter, f"{self.id}:8500")

    # ------------------------------------------------------------------ process lifecycle

    def start(self) -> None:
        c = self.cluster
        durable = self.disk.durable
        self.disk.written = durable.copy()
        hs = durable.hard_state
        if c.cfg.forget_vote:
            # A broken runtime whose storage drops the vote: only the votes it grants
            # (messages) can show it, not a comparison with what the disk held.
            hs = HardState(hs.term, None)
            durable.hard_state = self.disk.written.hard_state = hs
        meta = durable.snapshot
        self.fsm = SimStateMachine()
        if meta is not None:
            self.fsm.restore(durable.snapshot_data, meta.config)
            c.checker.snapshot_restored(self.id, meta.index, self.fsm.digest)
        after = meta.index if meta is not None else 0
        entries = [e for e in durable.entries if e.index > after]
        self.last_snapshot_index = after
        self.leader_term = 0
        self.incarnation += 1
        self.core = c.factory(
            self.id,
            c.cfg.core,
            random.Random(c.rng.getrandbits(64)),
            self.snapshots,
            hard_state=hs,
            snapshot=meta,
            entries=entries,
        )
        c.trace.add(
            c.now, self.id, "start",
            f"term={hs.term} vote={hs.vote} snapshot={after} log={after}..{durable.last_index}",
        )
        c.observe(self)
        self.pump()

    def crash(self, wipe: bool = False) -> None:
        c = self.cluster
        kept = 0
        if wipe:
            self.disk.wipe()
            self.wiped = True
        else:
            kept = self.disk.crash(c.rng)
        self.core = None
        self.inflight.clear()
        self.proposals.clear()
        self.reads.clear()
        self.waiting_reads.clear()
        self.paused_until = 0
        c.trace.add(
            c.now, self.id, "wipe" if wipe else "crash",
            "" if wipe else f"kept {kept} unsynced writes; durable log to "
            f"{self.disk.durable.last_index}",
        )

    # ------------------------------------------------------------------ the Ready loop

    def pump(self) -> None:
        c = self.cluster
        pipeline = c.cfg.pipeline
        core = self.core
        inflight = self.inflight
        while core is not None and (pipeline or not inflight) and core.has_ready():
            rd = core.ready()
            writes = self._write(rd)
            if pipeline and rd.messages and core.role is Role.LEADER:
                # etcd's optimisation: a leader's AppendEntries may leave before its own
                # fsync, since its own log counts towards commit only once persisted.
                held = []
                for msg in rd.messages:
                    if type(msg) is AppendEntries:
                        c.send(msg)
                    else:
                        held.append(msg)
                rd.messages = held
            delay = c.fsync_delay() if writes else 0
            if delay or inflight:
                due = c.now + delay
                if inflight and inflight[-1][2] > due:
                    due = inflight[-1][2]  # completions stay in order
                inflight.append((rd, writes, due))
                continue
            if writes:
                self.disk.sync(writes)
            self._complete(rd)
            core = self.core

    def finish_fsyncs(self, now: int) -> None:
        """Complete, in order, every Ready whose fsync is done by `now`."""
        inflight = self.inflight
        while inflight and inflight[0][2] <= now and self.core is not None:
            rd, writes, _ = inflight.popleft()
            self.disk.sync(writes)
            self._complete(rd)
        self.pump()

    def _write(self, rd: Ready) -> int:
        """Steps 1-3: hand the Ready's writes to the (unsynced) disk; return how many."""
        disk = self.disk
        c = self.cluster
        if rd.committed:
            # Ready.committed may hold only entries this node has made durable (persisted()
            # acknowledged them): otherwise the state machine runs ahead of the log, and a
            # leader's acknowledged write can vanish in a crash.
            durable = disk.durable
            for e in (rd.committed[0], rd.committed[-1]):
                if e.index > durable.offset and durable.term_at(e.index) != e.term:
                    raise Violation(
                        "apply-before-persist",
                        f"{self.id} was told to apply {e.index}@{e.term} before it was durable "
                        f"(durable log ends at {durable.last_index})",
                    )
        before = disk.barrier()
        try:
            if rd.hard_state is not None:
                hs = rd.hard_state
                old = disk.written.hard_state
                if hs.term < old.term:
                    raise Violation(
                        "term-regression",
                        f"{self.id} overwrote term {old.term} with term {hs.term}",
                    )
                if hs.term == old.term and old.vote is not None and hs.vote != old.vote:
                    raise Violation(
                        "one-vote-per-term",
                        f"{self.id} recorded a term-{hs.term} vote for {hs.vote} over its "
                        f"durable vote for {old.vote}",
                    )
                disk.write_hard_state(hs)
            if rd.snapshot is not None:
                assert rd.snapshot.data is not None  # (the sim's cores keep it in memory)
                disk.write_snapshot(rd.snapshot.meta, rd.snapshot.data)
            if rd.truncate_from is not None:
                disk.write_truncate(rd.truncate_from)
                c.trace.add(c.now, self.id, "truncate", f"from {rd.truncate_from}")
            if rd.entries:
                image = disk.written
                prev = image.term_at(rd.entries[0].index - 1)
                disk.write_entries(rd.entries)
                c.checker.entries_written(self.id, prev, rd.entries)
                self._check_leader_log(rd.entries)
        except DiskError as exc:
            raise Violation("ready-contract", f"{self.id}: {exc}") from None
        return disk.barrier() - before

    def _check_leader_log(self, entries: list[Entry]) -> None:
        """Leader completeness and one-config-change-at-a-time, when a leader writes its
        own entries (its whole log up to them is on the written image by then)."""
        core = self.core
        assert core is not None
        if core.role is not Role.LEADER:
            return
        term = core.term
        if entries[-1].term != term:
            return
        image = self.disk.written
        if self.checked_leader_term != term:
            self.checked_leader_term = term
            snap = image.snapshot
            digest = None
            if snap is not None:
                fsm = SimStateMachine()
                fsm.restore(image.snapshot_data, snap.config)
                digest = fsm.digest
            self.cluster.checker.leader_complete(
                self.id, term, image.offset + 1, image.term_at,
                snap.index if snap is not None else 0, digest,
            )
        for e in entries:
            if e.kind == EntryKind.CONFIG and e.term == term:
                self._check_single_change(e, image)

    def _check_single_change(self, entry: Entry, image: object) -> None:
        core = self.core
        assert core is not None
        disk_image = self.disk.written
        for i in range(entry.index - 1, max(disk_image.offset, core.commit_index), -1):
            prev = disk_image.entry(i)
            if prev is not None and prev.kind == EntryKind.CONFIG:
                raise Violation(
                    "single-config-change",
                    f"{self.id} (leader of term {core.term}) appended configuration {entry.index} "
                    f"while configuration {i} is uncommitted (commit index {core.commit_index})",
                )

    def _complete(self, rd: Ready) -> None:
        """Steps 1-3 are durable: persisted, messages, snapshot restore, apply, reads."""
        c = self.cluster
        core = self.core
        assert core is not None
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            assert rd.snapshot.data is not None
            self.fsm.restore(rd.snapshot.data, meta.config)
            c.checker.snapshot_restored(self.id, meta.index, self.fsm.digest)
            self.last_snapshot_index = meta.index
            for index in [i for i in self.proposals if i <= meta.index]:
                del self.proposals[index]  # outcome unknown to this runtime: never acked
            c.trace.add(c.now, self.id, "install", f"snapshot {meta.index}@{meta.term}")
            core.applied(meta.index)
        if rd.entries:
            last = rd.entries[-1]
            core.persisted(last.index, last.term)
        for msg in rd.messages:
            if type(msg) is VoteResponse and msg.granted:
                c.checker.vote_granted(msg.src, msg.term, msg.dst)
            c.send(msg)
        if rd.committed:
            self._apply(rd.committed)
        for rs in rd.read_states:
            read = self.reads.get(rs.ctx)
            if read is None:
                continue
            read.index = rs.index
            c.checker.read_index_given(self.id, rs.ctx, rs.index, read.required)
            if self.fsm.applied >= rs.index:
                self._serve(read)
            else:
                self.waiting_reads.append(read)
        for ctx in rd.dropped_reads:
            self.reads.pop(ctx, None)
        c.observe(self)

    def _apply(self, entries: list[Entry]) -> None:
        c = self.cluster
        core = self.core
        assert core is not None
        fsm = self.fsm
        checker = c.checker
        acks: list[int] = []
        for e in entries:
            if e.index != fsm.applied + 1:
                raise Violation(
                    "apply-order",
                    f"{self.id} was given entry {e.index} to apply after {fsm.applied}",
                )
            fsm.apply(e)
            checker.applied(self.id, e, fsm.digest)
            c.commits += 1
            proposal = self.proposals.pop(e.index, None)
            if proposal is not None and proposal[0] == e.term:
                c.ack(self, e, proposal[1])
                acks.append(proposal[1])
        c.trace.add(
            c.now, self.id, "apply",
            f"{entries[0].index}..{entries[-1].index}@{entries[-1].term}"
            + (f" acked w{acks[0]}..w{acks[-1]} ({len(acks)})" if acks else ""),
        )
        core.applied(fsm.applied)
        if self.waiting_reads:
            still = []
            for read in self.waiting_reads:
                if fsm.applied >= read.index:
                    self._serve(read)
                else:
                    still.append(read)
            self.waiting_reads = still
        if fsm.applied - self.last_snapshot_index >= c.cfg.snapshot_threshold:
            self._snapshot()

    def _serve(self, read: _Read) -> None:
        self.reads.pop(read.ctx, None)
        c = self.cluster
        c.checker.read_served(self.id, read.ctx, read.index, read.required, self.fsm.applied)
        c.trace.add(
            c.now, self.id, "read",
            f"ctx={read.ctx} index={read.index} state={self.fsm.applied} need>={read.required}",
        )

    def _snapshot(self) -> None:
        """The runtime's take_snapshot: save the state, then compact the core and the log."""
        core = self.core
        assert core is not None
        fsm = self.fsm
        meta = SnapshotMeta(fsm.applied, fsm.applied_term, fsm.config)
        trailing = self.cluster.cfg.trailing_logs
        self.disk.compact(meta, fsm.snapshot(), max(0, meta.index - trailing))
        self.last_snapshot_index = meta.index
        core.compact(meta, trailing)


class Cluster:
    """One seeded run."""

    def __init__(self, seed: int, cfg: SimConfig, factory: CoreFactory = RaftCore) -> None:
        self.seed = seed
        self.cfg = cfg
        self.factory = factory
        self.rng = random.Random(seed)
        self.now = 0
        self.trace = Trace(cfg.trace_keep, cfg.trace_digest, cfg.trace_echo)
        self.checker = Checker()
        self.network = Network(random.Random(self.rng.getrandbits(64)))
        self.nodes: dict[str, SimNode] = {}
        self.next_node = 1
        self.next_write = 1
        self.next_ctx = 1
        self.commits = 0
        self.fsync_slow = 0.0  # share of fsyncs that complete late
        self.quiet = False

    # ------------------------------------------------------------------ plumbing

    def new_node(self) -> SimNode:
        node = SimNode(self, f"n{self.next_node}")
        self.next_node += 1
        self.nodes[node.id] = node
        return node

    def fsync_delay(self) -> int:
        r = self.rng.random()
        if self.fsync_slow and r < self.fsync_slow:
            return self.rng.randint(5, 60)
        if r < 0.7:
            return 0
        return self.rng.randint(1, 2)

    def send(self, msg: Message) -> None:
        if self.cfg.wire_rate and self.rng.random() < self.cfg.wire_rate:
            msg = decode(encode(msg))
        self.network.send(self.now, msg.src, msg.dst, msg)

    def observe(self, node: SimNode) -> None:
        """After every input: election safety, and the leader's commitment rule."""
        core = node.core
        if core is None or core.role is not Role.LEADER:
            return
        term = core.term
        if self.checker.observe_leader(node.id, term):
            self.trace.add(self.now, node.id, "leader", f"term {term}")
        commit = core.commit_index
        if node.leader_term != term:
            node.leader_term = term
            node.leader_commit = commit
        elif commit > node.leader_commit and self.cfg.commitment_rule:
            node.leader_commit = commit
            # Raft §5.4.2 (Figure 8): a leader commits by counting replicas only entries of
            # its own term (earlier ones follow as a consequence). Entries up to the commit
            # index are durable on the leader, so its written log holds them.
            have = node.disk.written.term_at(commit)
            if have is not None and have != term:
                raise Violation(
                    "commitment-rule",
                    f"{node.id}, leader of term {term}, advanced its commit index to {commit}, "
                    f"an entry of term {have} (Figure 8)",
                )

    def ack(self, node: SimNode, entry: Entry, write_id: int) -> None:
        self.checker.acknowledged(Ack(write_id, entry.index, entry.term, node.id, self.now))

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def leader(self) -> SimNode | None:
        """The live leader with the highest term (a deposed one may not know it yet)."""
        best: SimNode | None = None
        for n in self.nodes.values():
            core = n.core
            if core is not None and core.role is Role.LEADER and (
                best is None or core.term > best.core.term  # type: ignore[union-attr]
            ):
                best = n
        return best

    # ------------------------------------------------------------------ one tick

    def step(self) -> None:
        now = self.now
        nodes = self.nodes
        trace_messages = self.cfg.trace_messages
        # Deliver in rounds: a message sent with no delay arrives within the same tick.
        for _ in range(16):
            batch = self.network.due(now)
            if not batch:
                break
            touched: dict[str, SimNode] = {}
            for src, dst, msg in batch:
                node = nodes.get(dst)
                if node is None or node.core is None:
                    continue
                if node.paused_until > now:
                    self.network.send(node.paused_until, src, dst, msg)
                    continue
                if trace_messages:
                    self.trace.add(now, dst, "recv", _show_message(msg))
                node.core.step(msg)  # type: ignore[arg-type]
                self.observe(node)
                touched[dst] = node
            for node in touched.values():
                node.pump()
        for node in list(nodes.values()):
            if node.core is None or node.paused_until > now:
                continue
            if node.inflight and node.inflight[0][2] <= now:
                node.finish_fsyncs(now)
            drift = node.drift
            if drift >= 0 or now % -drift:  # a slow clock skips every |drift|-th tick
                node.core.tick()
                if drift > 0 and now % drift == 0:  # a fast one ticks twice every drift-th
                    node.core.tick()
            self.observe(node)
            node.pump()
        self.now = now + 1

    # ------------------------------------------------------------------ clients

    def propose(self, node: SimNode, count: int = 1) -> int:
        """Client writes on `node`; returns how many the core accepted."""
        core = node.core
        if core is None or node.paused_until > self.now:
            return 0
        accepted = 0
        first = self.next_write
        for _ in range(count):
            wid = self.next_write
            self.next_write += 1
            try:
                pad = self.rng.randint(0, self.cfg.payload_bytes) if self.cfg.payload_bytes else 0
                index, term = core.propose(command(wid, pad))
            except (NotLeaderError, ProposalRejected):
                break
            node.proposals[index] = (term, wid)
            accepted += 1
        if accepted:
            self.trace.add(self.now, node.id, "propose", f"{accepted} writes from w{first}")
            node.pump()
        return accepted

    def read(self, node: SimNode) -> None:
        core = node.core
        if core is None or node.paused_until > self.now:
            return
        ctx = self.next_ctx
        self.next_ctx += 1
        read = _Read(ctx, self.checker.acked_max_index)
        node.reads[ctx] = read
        try:
            core.read_index(ctx)
        except (NotLeaderError, ProposalRejected):
            node.reads.pop(ctx, None)
            return
        node.pump()

    def client_step(self) -> None:
        cfg = self.cfg
        rng = self.rng
        if rng.random() < cfg.propose_rate:
            target = self._client_target()
            if target is not None:
                self.propose(target, 1 if rng.random() < 0.7 else rng.randint(2, 12))
        if rng.random() < cfg.read_rate:
            target = self._client_target()
            if target is not None:
                self.read(target)

    def _client_target(self) -> SimNode | None:
        """Clients mostly find the leader (they follow redirects), sometimes hit anyone."""
        rng = self.rng
        if rng.random() < 0.85:
            leader = self.leader()
            if leader is not None:
                return leader
        live = self.live()
        return rng.choice(live) if live else None

    # ------------------------------------------------------------------ results

    def result(self, violation: Violation | None, recovery: int) -> RunResult:
        return RunResult(
            seed=self.seed,
            violation=violation,
            trace=self.trace.render(),
            digest=self.trace.hexdigest(),
            elections=self.checker.elections,
            commits=self.commits,
            acked=len(self.checker.acked),
            reads=self.checker.reads_checked,
            recovery_ticks=recovery,
            ticks=self.now,
            events=self.trace.total,
        )


def _show_message(msg: object) -> str:
    """A message, short: AppendEntries list their entries as index@term ranges."""
    if isinstance(msg, AppendEntries):
        span = (
            f"[{msg.entries[0].index}..{msg.entries[-1].index}@{msg.entries[-1].term}]"
            if msg.entries else "[]"
        )
        return (
            f"AppendEntries from {msg.src} t{msg.term} prev={msg.prev_index}@{msg.prev_term} "
            f"{span} commit={msg.commit}"
        )
    text = repr(msg)
    return text.replace("src=", "from ").replace(", dst=", " to ")
