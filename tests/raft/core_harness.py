"""A hand-driven cluster of RaftCores for the core's unit tests.

Each ``Node`` handles its Readies exactly as the runtime must (hard state, snapshot, truncate +
append + "fsync", then messages, then apply), against an in-memory disk that survives
``restart()``. Messages are never delivered by themselves: a test moves them with ``deliver``
(optionally filtered) so every scenario is built by hand and is deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgpack

from konsul.raft.core import CoreConfig, RaftCore, ReadState, ReceivedSnapshot, Role
from konsul.raft.messages import Message, decode, encode, encode_configuration
from konsul.raft.types import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Member,
    SnapshotMeta,
)

FAST = CoreConfig(
    heartbeat_timeout_ticks=10,
    election_timeout_ticks=10,
    leader_lease_ticks=10,
    commit_ticks=2,
    max_append_entries=4,
    max_inflight=2,
    snapshot_chunk_bytes=8,
)


def config_of(*ids: str, learners: Iterable[str] = ()) -> Configuration:
    members = [Member(i, f"{i}:7000", True, f"{i}:8500") for i in ids]
    members += [Member(i, f"{i}:7000", False, f"{i}:8500") for i in learners]
    return Configuration(tuple(members))


def config_entry(index: int, term: int, config: Configuration) -> Entry:
    return Entry(index, term, EntryKind.CONFIG, encode_configuration(config))


def cmd(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index, term, EntryKind.COMMAND, data or f"{index}@{term}".encode())


class MemSnapshots:
    """SnapshotSource over snapshots kept in memory, keyed by (index, term)."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[int, int], bytes] = {}
        self.reads = 0

    def snapshot_size(self, meta: SnapshotMeta) -> int:
        return len(self.blobs[(meta.index, meta.term)])

    def read_snapshot_chunk(self, meta: SnapshotMeta, offset: int, size: int) -> bytes:
        self.reads += 1
        return self.blobs[(meta.index, meta.term)][offset : offset + size]


@dataclass
class Disk:
    hard_state: HardState = field(default_factory=HardState)
    log: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b""


class Node:
    def __init__(
        self,
        node_id: str,
        cfg: CoreConfig = FAST,
        seed: int = 0,
        disk: Disk | None = None,
        core_class: type[RaftCore] = RaftCore,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.id = node_id
        self.trace = trace
        self.cfg = cfg
        self.seed = seed
        self.core_class = core_class
        self.disk = disk or Disk()
        self.snapshots = MemSnapshots()
        self.applied: list[Entry] = []  # entries applied since the last restore, in order
        self.sm: list[bytes] = []  # the "state machine": every command applied, in order
        self.restored_from: SnapshotMeta | None = None
        self.received: list[ReceivedSnapshot] = []  # every Ready.snapshot, in order
        self.read_states: list[ReadState] = []
        self.dropped_reads: list[int] = []
        self.auto_persist = True  # acknowledge persistence right after writing
        self.unacked: list[tuple[int, int]] = []
        self.core = self._new_core()

    def _new_core(self) -> RaftCore:
        d = self.disk
        if d.snapshot is not None:
            self.snapshots.blobs[(d.snapshot.index, d.snapshot.term)] = d.snapshot_data
        return self.core_class(
            self.id,
            self.cfg,
            random.Random(f"{self.id}/{self.seed}"),
            self.snapshots,
            hard_state=d.hard_state,
            snapshot=d.snapshot,
            entries=list(d.log),
            trace=self.trace,
        )

    def restart(self) -> None:
        self.applied = []
        d = self.disk
        self.sm = msgpack.unpackb(d.snapshot_data) if d.snapshot is not None else []
        self.core = self._new_core()

    def handle_ready(self) -> list[Message]:
        """Handle every pending Ready the way the runtime must; return the messages to send."""
        out: list[Message] = []
        while self.core.has_ready():
            out += self.handle_one_ready()
        return out

    def handle_one_ready(self) -> list[Message]:
        """Handle the next Ready the way the runtime must; return the messages to send."""
        core = self.core
        rd = core.ready()
        d = self.disk
        if rd.hard_state is not None:
            d.hard_state = rd.hard_state
        if rd.snapshot is not None:
            self.received.append(rd.snapshot)
            meta = rd.snapshot.meta
            d.snapshot, d.snapshot_data = meta, rd.snapshot.data
            self.snapshots.blobs[(meta.index, meta.term)] = rd.snapshot.data
            d.log = []
            self.restored_from = meta
            self.applied = []
            self.sm = msgpack.unpackb(rd.snapshot.data)
        if rd.truncate_from is not None:
            d.log = [e for e in d.log if e.index < rd.truncate_from]
        if rd.entries:
            if d.log:
                assert rd.entries[0].index == d.log[-1].index + 1, "WAL gap"
            d.log.extend(rd.entries)
            last = rd.entries[-1]
            if self.auto_persist:
                core.persisted(last.index, last.term)
            else:
                self.unacked.append((last.index, last.term))
        # every message must survive the wire codec
        out = [decode(encode(m)) for m in rd.messages]
        for e in rd.committed:
            k = e.index - d.log[0].index if d.log else -1
            disk_entry = d.log[k] if 0 <= k < len(d.log) else None
            assert disk_entry == e, f"{self.id} applies {e.index} before it is durable"
            if self.applied:
                assert e.index == self.applied[-1].index + 1, "apply gap"
            self.applied.append(e)
            if e.kind is EntryKind.COMMAND:
                self.sm.append(e.data)
        if rd.committed:
            core.applied(rd.committed[-1].index)
        self.read_states.extend(rd.read_states)
        self.dropped_reads.extend(rd.dropped_reads)
        return out

    def ack_persisted(self) -> None:
        for index, term in self.unacked:
            self.core.persisted(index, term)
        self.unacked = []

    def commands(self) -> list[bytes]:
        return list(self.sm)

    def take_snapshot(self, trailing: int = 0) -> SnapshotMeta:
        """Save the state machine through the applied index and compact the core's log."""
        core = self.core
        index = self.applied[-1].index
        term = core.term_at(index)
        assert term is not None
        meta = SnapshotMeta(index, term, core.committed_configuration)
        data = msgpack.packb(self.sm)
        self.snapshots.blobs[(index, term)] = data
        self.disk.snapshot, self.disk.snapshot_data = meta, data
        core.compact(meta, trailing)
        self.disk.log = [e for e in self.disk.log if e.index >= core.first_index]
        return meta


Filter = Callable[[Message], bool]


class Cluster:
    def __init__(
        self,
        ids: Iterable[str],
        cfg: CoreConfig = FAST,
        seed: int = 0,
        *,
        members: Configuration | None = None,
        nodes: dict[str, Node] | None = None,
    ) -> None:
        ids = list(ids)
        if nodes is None:
            config = members or config_of(*ids)
            nodes = {}
            for i in ids:
                disk = Disk(HardState(1, None), [config_entry(1, 1, config)])
                nodes[i] = Node(i, cfg, seed, disk)
        self.nodes = nodes
        self.net: list[Message] = []
        self.down: set[str] = set()  # crashed: messages to and from them are lost
        self.cut: set[frozenset[str]] = set()  # partitioned pairs
        self.pump()

    def __getitem__(self, node_id: str) -> RaftCore:
        return self.nodes[node_id].core

    def pump(self) -> None:
        for nid, node in self.nodes.items():
            if nid not in self.down:
                self.net.extend(node.handle_ready())

    def blocked(self, m: Message) -> bool:
        return m.src in self.down or m.dst in self.down or frozenset((m.src, m.dst)) in self.cut

    def deliver(self, keep: Filter | None = None, *, rounds: int = 1000) -> int:
        """Deliver in-flight messages (those ``keep`` accepts) until none is left; count them."""
        delivered = 0
        for _ in range(rounds):
            self.pump()
            batch, self.net = self.net, []
            moved = False
            for m in batch:
                if self.blocked(m):
                    continue  # lost
                if keep is not None and not keep(m):
                    self.net.append(m)  # held back
                    continue
                if m.dst in self.nodes:
                    self.nodes[m.dst].core.step(m)
                    delivered += 1
                    moved = True
            self.pump()
            if not moved:
                return delivered
        raise AssertionError("messages never settled")

    def take(self, keep: Filter) -> list[Message]:
        """Remove and return the in-flight messages ``keep`` accepts."""
        self.pump()
        taken = [m for m in self.net if keep(m)]
        self.net = [m for m in self.net if not keep(m)]
        return taken

    def drop_all(self) -> None:
        self.pump()
        self.net = []

    def tick(self, n: int = 1, only: Iterable[str] | None = None, *, settle: bool = True) -> None:
        ids = list(only) if only is not None else list(self.nodes)
        for _ in range(n):
            for nid in ids:
                if nid not in self.down:
                    self.nodes[nid].core.tick()
            if settle:
                self.deliver()
            else:
                self.pump()

    def elect(self, node_id: str, *, max_ticks: int = 100) -> None:
        """Let only ``node_id``'s clock run until it leads (the others hear nothing meanwhile)."""
        for _ in range(max_ticks):
            self.nodes[node_id].core.tick()
            self.deliver()
            if self[node_id].role is Role.LEADER:
                self.deliver()
                return
        raise AssertionError(f"{node_id} did not become leader")

    def leader(self) -> str | None:
        leaders = [
            i for i, n in self.nodes.items() if i not in self.down and n.core.role is Role.LEADER
        ]
        return leaders[0] if len(leaders) == 1 else None

    def crash(self, node_id: str) -> None:
        self.down.add(node_id)

    def recover(self, node_id: str) -> None:
        self.down.discard(node_id)
        self.nodes[node_id].restart()
        self.pump()

    def partition(self, *groups: Iterable[str]) -> None:
        sets = [set(g) for g in groups]
        self.cut = set()
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self.cut.add(frozenset((x, y)))

    def heal(self) -> None:
        self.cut = set()


def single_node(node_id: str = "a", cfg: CoreConfig = FAST) -> Node:
    node = Node(node_id, cfg)
    node.core.bootstrap(Member(node_id, f"{node_id}:7000", True, f"{node_id}:8500"))
    node.handle_ready()
    return node


def node_with(
    node_id: str,
    terms: Iterable[int] = (1,),
    *,
    term: int | None = None,
    vote: str | None = None,
    ids: str | Iterable[str] = "abc",
    cfg: CoreConfig = FAST,
    seed: int = 0,
    core_class: type[RaftCore] = RaftCore,
) -> Node:
    """A node restarted from a log whose entry i has term ``terms[i-1]`` (entry 1 = config)."""
    terms = list(terms)
    config = config_of(*ids)
    log = [config_entry(1, terms[0], config)]
    log += [cmd(i, t) for i, t in enumerate(terms[1:], start=2)]
    hs = HardState(term if term is not None else terms[-1], vote)
    return Node(node_id, cfg, seed, Disk(hs, log), core_class)


def sent(node: Node, kind: type | None = None) -> list[Message]:
    """Handle the node's Readies and return what it sends (of one kind if given)."""
    return [m for m in node.handle_ready() if kind is None or isinstance(m, kind)]
