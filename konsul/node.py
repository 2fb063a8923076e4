"""The node: what the HTTP API calls. It owns the Raft runtime, the store and the metrics.

Interface (stable; the HTTP layer codes against it):

- ``store``: the local replica of the state machine (reads go straight to it).
- ``await propose(data)``: replicate a command (from ``konsul.store.commands``) and return the
  state machine's result. Raises ``NotLeader`` (307), ``NoLeader`` (503), ``Unavailable`` (503:
  leadership lost while the write was in flight, outcome unknown).
- ``await read_barrier()``: a linearizable read point (ReadIndex); afterwards the local store
  reflects every write acknowledged before the call. Raises ``NoLeader``.
- ``await wait_for(index_fn, after, timeout)``: blocking reads; returns once ``index_fn() > after``
  or the timeout passes.
- ``status()``, ``leader()``, ``is_leader``, ``peers()``, ``last_contact_ms()``, ``is_ready()``.
- ``await join(member)``, ``leave(node_id)``, ``transfer_leadership(node_id | None)``,
  ``bootstrap()``, ``take_snapshot()``: cluster operations; standalone they raise
  ``ClusteringDisabled`` except ``take_snapshot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from konsul.checks import CheckRunner
from konsul.config import Settings
from konsul.errors import ClusteringDisabled, Conflict
from konsul.metrics import Metrics
from konsul.raft.core import RaftCore, Role
from konsul.raft.runtime import TICK_SECONDS, RaftRuntime
from konsul.raft.types import Member
from konsul.store import StateMachine


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """Everything ``GET /cluster/status`` shows (the guide's fields plus api.md's additions)."""

    node_id: str
    state: str  # "Leader" | "Follower" | "Candidate"
    leader_id: str | None
    leader_addr: str | None
    leader_http_addr: str | None
    peers: tuple[Member, ...]
    commit_index: int
    applied_index: int
    last_index: int
    fsm_pending: int
    term: int
    last_contact_ms: int
    last_snapshot_index: int
    address: str
    http_address: str


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    index: int
    term: int
    size_bytes: int


class Node:
    """One Konsul node: settings, store, metrics and the Raft runtime that replicates the store."""

    def __init__(self, settings: Settings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.clustered = settings.raft.enabled
        self.metrics = Metrics()
        self.store = StateMachine()
        os.makedirs(settings.raft.data_dir, exist_ok=True)
        self.node_id = settings.raft.node_id if self.clustered else _standalone_id(settings)
        self.runtime = RaftRuntime(self.node_id, settings.raft, self.store, self.metrics, rng=rng)
        self.started = False
        self._background: list[asyncio.Task[None]] = []

    @property
    def core(self) -> RaftCore:
        return self.runtime.core

    def me(self) -> Member:
        return Member(
            self.node_id,
            self.settings.raft.advertise_addr,
            True,
            self.settings.http_advertise_addr,
        )

    async def start(self) -> None:
        await self.runtime.start()
        if self.core.is_empty and (not self.clustered or self.settings.raft.bootstrap):
            self.core.bootstrap(self.me())
            self.runtime.poke()
        self.started = True
        self._background.append(asyncio.create_task(CheckRunner(self).run(), name="check-runner"))

    async def before_shutdown(self) -> None:
        """On SIGTERM a clustered leader hands leadership over first (comes with the transport)."""

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runtime.stop()

    # ------------------------------------------------------------------------------ writes

    async def propose(self, data: bytes) -> object:
        return await self.runtime.propose(data)

    # ------------------------------------------------------------------------------- reads

    async def read_barrier(self) -> None:
        await self.runtime.read_barrier()

    async def wait_for(self, index_fn: Callable[[], int], after: int, timeout: float) -> None:
        await self.runtime.wait_applied(lambda: index_fn() > after, timeout)

    # ------------------------------------------------------------------------------ status

    @property
    def is_leader(self) -> bool:
        return self.core.role == Role.LEADER

    def leader(self) -> Member | None:
        leader_id = self.core.leader_id
        return self.core.configuration.get(leader_id) if leader_id else None

    def peers(self) -> list[Member]:
        return list(self.core.configuration.members)

    def last_contact_ms(self) -> int:
        if self.is_leader:
            return 0
        return self.core.ticks_since_leader_contact * round(TICK_SECONDS * 1000)

    def status(self) -> RaftStatus:
        core, leader = self.core, self.leader()
        return RaftStatus(
            node_id=self.node_id,
            state=_STATE_NAMES.get(core.role, "Follower"),
            leader_id=core.leader_id,
            leader_addr=leader.address if leader else None,
            leader_http_addr=leader.http_address if leader else None,
            peers=core.configuration.members,
            commit_index=core.commit_index,
            applied_index=self.store.last_applied,
            last_index=core.last_index,
            fsm_pending=max(0, core.commit_index - self.store.last_applied),
            term=core.term,
            last_contact_ms=self.last_contact_ms(),
            last_snapshot_index=self.runtime.last_snapshot.index
            if self.runtime.last_snapshot
            else 0,
            address=self.settings.raft.advertise_addr,
            http_address=self.settings.http_advertise_addr,
        )

    def is_ready(self) -> bool:
        """Can this node serve correct reads: it knows a leader and has applied what it learned."""
        if not self.started or self.core.leader_id is None:
            return False
        return self.store.last_applied >= self.core.commit_index

    # ------------------------------------------------------------------- cluster operations

    def _require_cluster(self) -> None:
        if not self.clustered:
            raise ClusteringDisabled()

    async def join(self, member: Member) -> None:
        self._require_cluster()
        raise ClusteringDisabled("Joining nodes arrives with the network transport.")

    async def leave(self, node_id: str) -> None:
        self._require_cluster()
        raise ClusteringDisabled("Removing nodes arrives with the network transport.")

    async def transfer_leadership(self, node_id: str | None) -> str:
        self._require_cluster()
        raise ClusteringDisabled("Leadership transfer arrives with the network transport.")

    async def bootstrap(self) -> None:
        self._require_cluster()
        if not self.core.is_empty:
            raise Conflict("This node already has Raft state; only an empty node can bootstrap.")
        self.core.bootstrap(self.me())
        self.runtime.poke()

    async def take_snapshot(self) -> SnapshotInfo:
        saved = await self.runtime.take_snapshot()
        return SnapshotInfo(saved.meta.index, saved.meta.term, saved.size_bytes)


_STATE_NAMES = {
    Role.LEADER: "Leader",
    Role.CANDIDATE: "Candidate",
    Role.PRE_CANDIDATE: "Candidate",
    Role.FOLLOWER: "Follower",
}


def _standalone_id(settings: Settings) -> str:
    """A standalone node keeps the id it was born with, even if the host is renamed later."""
    path = os.path.join(settings.data_dir, "node-id")
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        return f.read().strip()
    node_id = settings.raft.node_id or "node1"
    os.makedirs(settings.data_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(node_id + "\n")
    return node_id
