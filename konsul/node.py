"""The node: what the HTTP API calls. It owns the Raft runtime, the store and the metrics.

Interface (stable; the HTTP layer codes against it):

- ``store``: the local replica of the state machine (reads go straight to it).
- ``await propose(data)``: replicate a command (from ``konsul.store.commands``) and return the
  state machine's result. Raises ``NotLeader``, ``NoLeader``, ``OutcomeUnknown`` (leadership
  lost while the write was in flight, or it did not commit in time) or ``Unavailable``.
- ``await read_barrier()``: a linearizable read point (ReadIndex); afterwards the local store
  reflects every write acknowledged before the call. Raises ``NoLeader``.
- ``await watch(topic, index_fn, after, timeout)``: blocking reads; returns once
  ``index_fn() > after`` (checked whenever what ``topic`` names changes, ``konsul.watch``) or
  the timeout passes; ``watches.release_all()`` answers every parked reader at once.
- ``status()``, ``leader()``, ``is_leader``, ``peers()``, ``last_contact_ms()``, ``is_ready()``.
- ``membership``: ``join(member)``, ``leave(node_id)``, ``transfer_leadership(node_id | None)``,
  ``bootstrap()`` (``konsul.membership``); ``take_snapshot()``.
- ``peer_http``: the one client session for calls to other members (``konsul.peers``).
- ``identity``: the cluster this node belongs to (``konsul.raft.identity``); ``restorer``:
  online restores (``konsul.backup.restore``; the rest of ``konsul.backup`` takes the node).

A node is wired here and nothing is set after construction: the Raft runtime gets its transport
(none on a standalone node), the check runner a view of the node (``checks.CheckHost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from konsul.acl.resolver import Resolver
from konsul.acl.tokens import hash_secret
from konsul.backup import staging
from konsul.backup.restore import Restorer
from konsul.checks.runner import CheckRunner
from konsul.config import Settings, read_secret_file
from konsul.errors import KonsulError
from konsul.logs import event
from konsul.membership import Membership, leader_of
from konsul.metrics import Metrics
from konsul.peers import PeerHTTP
from konsul.raft import identity
from konsul.raft.core import RaftCore, Role
from konsul.raft.identity import ClusterIdentity
from konsul.raft.runtime import TICK_SECONDS, RaftRuntime
from konsul.raft.transport import TcpTransport
from konsul.raft.types import Configuration, Member
from konsul.storage.wal import DEFAULT_SEGMENT_BYTES
from konsul.store import StateMachine, commands
from konsul.tls import Tls
from konsul.watch import Topic, WatchHub


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
    # Started with no Raft state and not promoted since: neither votes nor campaigns. A member
    # listed as a voter while this is true lost its volume and must be removed and re-added.
    catching_up: bool
    cluster_id: str  # "" for an empty node, or data from before cluster ids
    # The cluster's commit index as this node knows it (its own on the leader), how many
    # entries it has yet to apply to reach it, and whether that is within READY_MAX_LAG.
    leader_commit_index: int
    lag: int
    ready: bool


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    index: int
    term: int
    size_bytes: int


class Node:
    """One Konsul node: settings, store, metrics and the Raft runtime that replicates the store."""

    def __init__(
        self,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        wal_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.settings = settings
        self.clustered = settings.raft.enabled
        self.metrics = Metrics()
        # Read (and checked) now: unusable TLS files stop the node before it serves anything.
        self.tls = Tls(settings.tls, self.metrics) if settings.tls.enabled else None
        self.store = StateMachine()
        # Always through self.store: a snapshot restore replaces the tables.
        self._initial_secret = self._initial_management_token()
        self.acl = (
            Resolver(lambda: self.store.acl, settings.acl.default_allow,
                     lambda: self._initial_secret)
            if settings.acl.enabled else None
        )
        os.makedirs(settings.raft.data_dir, exist_ok=True)
        self.node_id = identity.node_id(settings)
        raft = settings.raft
        self.identity = ClusterIdentity(raft.data_dir, lambda: not self.core.is_empty)
        self.transport = (
            TcpTransport(self.node_id, raft.bind_addr, raft.advertise_addr, tls=self.tls,
                         identity=self.identity)
            if self.clustered else None
        )
        self.runtime = RaftRuntime(
            self.node_id,
            raft,
            self.store,
            self.metrics,
            transport=self.transport,
            rng=rng,
            wal_segment_bytes=wal_segment_bytes,
        )
        self.runtime.on_config_applied.append(self._track_members)
        self.watches = WatchHub(self.store)
        self.runtime.on_applied.append(self.watches.notify)
        self.peer_http = PeerHTTP(settings.http_scheme, self.tls)
        self.membership = Membership(self.runtime, settings, self.me(), self.peer_http, self.tls,
                                     self.identity)
        self.restorer = Restorer(self)
        self.checks = CheckRunner(self)
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
        staging.clear(self.settings.raft.data_dir)  # what an interrupted upload left
        await self.runtime.start()
        if self.core.is_empty and (not self.clustered or self.settings.raft.bootstrap):
            self.identity.found()
            self.core.bootstrap(self.me())
            self.runtime.poke()
        self._track_members(self.core.configuration)
        self.started = True
        self._background.append(asyncio.create_task(self.checks.run(), name="check-runner"))
        self._background.append(asyncio.create_task(self.restorer.reap(), name="restore-reaper"))
        if self.tls is not None:
            self._background.append(asyncio.create_task(self._watch_tls(), name="tls-reload"))
        if self.acl is not None and (
            self.settings.acl.initial_management_token
            or self.settings.acl.initial_management_token_file
        ):
            self._background.append(
                asyncio.create_task(self._keep_initial_management_token(), name="acl-initial")
            )

    def _initial_management_token(self) -> str:
        """``KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN``, or the file's current content (a Secret
        that was rotated gives a new one); ``""`` when neither is set or the file is unusable."""
        acl = self.settings.acl
        if acl.initial_management_token_file:
            try:
                return read_secret_file(acl.initial_management_token_file)
            except ValueError:
                return ""
        return acl.initial_management_token

    def report_token(self) -> str | None:
        """The token this member's check reports to the leader carry: none needed without
        ACLs, the management token with them, and None when ACLs are on and this node has no
        management token (it then probes nothing while it follows, ``konsul.checks``)."""
        if self.acl is None:
            return ""
        return self._initial_secret or None

    async def _keep_initial_management_token(self) -> None:
        """The leader makes sure a management token with the configured secret exists (a new
        cluster, or a secret rotated by whoever controls the nodes' configuration)."""
        while True:
            secret = self._initial_secret = self._initial_management_token()
            secret_hash = hash_secret(secret) if secret else ""
            missing = secret_hash and self.store.acl.token_for_hash(secret_hash) is None
            if missing and self.is_leader:
                command = commands.acl_bootstrap(
                    str(uuid.uuid4()), secret_hash, "Initial management token", True
                )
                try:
                    await self.propose(command)
                except KonsulError as exc:
                    event(log, logging.WARNING, "could not create the initial management token",
                          error=exc)
                else:
                    event(log, logging.INFO, "initial management token in place")
            # Soon after an election while the token is missing; the file changes rarely.
            await asyncio.sleep(TICK_SECONDS * 5 if missing else ACL_CHECK_INTERVAL)

    async def _watch_tls(self) -> None:
        """Re-read the certificate files when they change (a renewed Secret, a rotation)."""
        assert self.tls is not None
        while True:
            await asyncio.sleep(TLS_RELOAD_INTERVAL)
            self.tls.reload_if_changed()

    async def before_shutdown(self) -> None:
        """On SIGTERM a clustered leader hands leadership over first: no election timeout."""
        if not (self.clustered and self.is_leader and len(self.core.configuration.voters()) > 1):
            return
        try:
            new_leader = await self.membership.transfer_leadership(None)
        except KonsulError as exc:
            event(log, logging.WARNING, "leadership transfer before shutdown failed", error=exc)
        else:
            event(log, logging.INFO, "leadership handed over before shutdown", to=new_leader)

    def _track_members(self, config: Configuration) -> None:
        """Connections to every member open (an election should not wait for one), none to
        servers that left the configuration."""
        transport = self.transport
        if transport is None:
            return
        for peer in list(transport.peer_ids()):
            if config.get(peer) is None and self.core.configuration.get(peer) is None:
                transport.forget(peer)
        for member in self.core.configuration.members:
            if member.id != self.node_id:
                transport.connect(member.id)

    async def stop(self) -> None:
        self.started = False
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runtime.stop()
        await self.peer_http.close()

    # ------------------------------------------------------------------------------ writes

    async def propose(self, data: bytes) -> object:
        return await self.runtime.propose(data)

    # ------------------------------------------------------------------------------- reads

    async def read_barrier(self) -> None:
        await self.runtime.read_barrier()

    async def watch(
        self, topic: Topic, index_fn: Callable[[], int], after: int, timeout: float
    ) -> None:
        await self.watches.wait(topic, lambda: index_fn() > after, timeout)

    # ------------------------------------------------------------------------------ status

    @property
    def is_leader(self) -> bool:
        return self.core.role == Role.LEADER

    def leader(self) -> Member | None:
        return leader_of(self.core)

    def peers(self) -> list[Member]:
        return list(self.core.configuration.members)

    def last_contact_ms(self) -> int:
        # The core already answers 0 on the leader.
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
            catching_up=core.catching_up,
            cluster_id=self.identity.value,
            leader_commit_index=core.leader_commit,
            lag=self.lag(),
            ready=self.is_ready(),
        )

    def lag(self) -> int:
        """Entries committed in the cluster (as far as this node knows) and not applied here."""
        return max(0, self.core.leader_commit - self.store.last_applied)

    def is_ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why this node cannot serve correct reads yet, or None when it can: it knows a
        leader, has applied an entry of the current term, and is within ``READY_MAX_LAG``
        entries of the leader's commit index.

        "An entry of the current term" is what makes it safe after a restart: until the
        leader's no-op of this term is applied, the commit index this node knows may be stale
        (a restarted node briefly believes everything it holds is applied). The lag is counted
        against the commit index the leader announces, not against the entries this node
        holds: a member catching up after a restart or a long absence is not ready (and a
        rolling restart does not move on) until it is close to the leader, and the leader must
        have said it since the node started or was sent a snapshot (``knows_leader_commit``).
        """
        if not self.started or self.core.leader_id is None:
            return "no leader is known"
        if self.runtime.applied_term != self.core.term:
            return "the node has not yet applied an entry of the current term"
        if not self.core.knows_leader_commit:
            return "the leader has not yet told this node its commit index"
        lag = self.lag()
        if lag > READY_MAX_LAG:
            return (f"the node is {lag} entries behind the leader's commit index "
                    f"{self.core.leader_commit}")
        return None

    async def take_snapshot(self) -> SnapshotInfo:
        saved = await self.runtime.take_snapshot()
        return SnapshotInfo(saved.meta.index, saved.meta.term, saved.size_bytes)


# How many committed entries a ready member may still have to apply. Not zero: on a leader
# and on a follower under write load there is always a batch between its commit and its apply
# (an fsync), and readiness must not flicker with it. One AppendEntries batch (64 entries by
# default) is a few milliseconds of work.
READY_MAX_LAG = 64
TLS_RELOAD_INTERVAL = 1.0
ACL_CHECK_INTERVAL = 1.0

log = logging.getLogger("konsul.node")


_STATE_NAMES = {
    Role.LEADER: "Leader",
    Role.CANDIDATE: "Candidate",
    Role.PRE_CANDIDATE: "Candidate",
    Role.FOLLOWER: "Follower",
}
