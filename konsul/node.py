"""The node: what the HTTP API calls. It owns the Raft runtime, the store and the metrics.

Interface (stable; the HTTP layer codes against it):

- ``store``: the local replica of the state machine (reads go straight to it).
- ``await propose(data)``: replicate a command (from ``konsul.store.commands``) and return the
  state machine's result. Raises ``NotLeader``, ``NoLeader``, ``OutcomeUnknown`` (leadership
  lost while the write was in flight, or it did not commit in time) or ``Unavailable``.
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
import logging
import os
import random
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from konsul.acl.resolver import Resolver
from konsul.acl.tokens import hash_secret
from konsul.checks import CheckRunner
from konsul.config import Settings, read_secret_file
from konsul.errors import (
    BadRequest,
    ClusteringDisabled,
    Conflict,
    KonsulError,
    NoLeader,
    NotFound,
    NotLeader,
    PeerNotTrusted,
    Timeout,
    Unavailable,
)
from konsul.logs import event
from konsul.metrics import Metrics
from konsul.raft.core import ProposalRejected, RaftCore, Role
from konsul.raft.runtime import TICK_SECONDS, RaftRuntime
from konsul.raft.transport import TcpTransport, split_host_port
from konsul.raft.types import Configuration, Member
from konsul.storage.wal import DEFAULT_SEGMENT_BYTES
from konsul.store import StateMachine, commands
from konsul.tls import Tls


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
        self.acl = (
            Resolver(lambda: self.store.acl, settings.acl.default_allow)
            if settings.acl.enabled else None
        )
        os.makedirs(settings.raft.data_dir, exist_ok=True)
        self.node_id = settings.raft.node_id if self.clustered else _standalone_id(settings)
        self.runtime = RaftRuntime(
            self.node_id,
            settings.raft,
            self.store,
            self.metrics,
            rng=rng,
            wal_segment_bytes=wal_segment_bytes,
        )
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
        if self.clustered:
            transport = TcpTransport(
                self.node_id,
                self.settings.raft.bind_addr,
                self.settings.raft.advertise_addr,
                resolve=self._address_of,
                deliver=self.runtime.receive,
                on_unreachable=self.runtime.peer_unreachable,
                tls=self.tls,
            )
            await transport.start()
            self.runtime.transport = transport
            self.runtime.on_config_applied.append(self._forget_removed)
        await self.runtime.start()
        if self.core.is_empty and (not self.clustered or self.settings.raft.bootstrap):
            self.core.bootstrap(self.me())
            self.runtime.poke()
        self.started = True
        self._background.append(asyncio.create_task(CheckRunner(self).run(), name="check-runner"))
        if self.tls is not None:
            self._background.append(asyncio.create_task(self._watch_tls(), name="tls-reload"))
        if self.acl is not None and self._initial_management_token():
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

    async def _keep_initial_management_token(self) -> None:
        """The leader makes sure a management token with the configured secret exists (a new
        cluster, or a secret rotated by whoever controls the nodes' configuration)."""
        while True:
            secret = self._initial_management_token()
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

    def http_url(self, address: str) -> str:
        """The base URL of another node's API (every member shares one TLS setting)."""
        return f"{self.settings.http_scheme}://{address}"

    def client_ssl(self) -> ssl.SSLContext | bool:
        """What node-to-node HTTP calls pass as aiohttp's ``ssl``: our client context, which
        checks the other node's certificate and presents ours (``True``: aiohttp's default)."""
        return self.tls.client() if self.tls is not None else True

    async def before_shutdown(self) -> None:
        """On SIGTERM a clustered leader hands leadership over first: no election timeout."""
        if not (self.clustered and self.is_leader and len(self.core.configuration.voters()) > 1):
            return
        try:
            new_leader = await self.transfer_leadership(None)
        except KonsulError as exc:
            event(log, logging.WARNING, "leadership transfer before shutdown failed", error=exc)
        else:
            event(log, logging.INFO, "leadership handed over before shutdown", to=new_leader)

    def _address_of(self, node_id: str) -> str | None:
        member = self.core.configuration.get(node_id)
        return member.address if member is not None and node_id != self.node_id else None

    def _forget_removed(self, config: Configuration) -> None:
        transport = self.runtime.transport
        if isinstance(transport, TcpTransport):
            for peer in list(transport.peer_ids()):
                if config.get(peer) is None and self.core.configuration.get(peer) is None:
                    transport.forget(peer)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runtime.stop()
        if isinstance(self.runtime.transport, TcpTransport):
            await self.runtime.transport.stop()

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
        )

    def is_ready(self) -> bool:
        """Can this node serve correct reads: it knows a leader and has applied what it learned.

        "Applied an entry of the current term" is what makes it safe after a restart: until the
        leader's no-op of this term is applied, the commit index this node knows may be stale
        (a restarted node briefly believes everything it holds is applied).
        """
        if not self.started or self.core.leader_id is None:
            return False
        return (
            self.runtime.applied_term == self.core.term
            and self.store.last_applied >= self.core.commit_index
        )

    # ------------------------------------------------------------------- cluster operations

    def _require_cluster(self) -> None:
        if not self.clustered:
            raise ClusteringDisabled()

    def _require_leader(self) -> None:
        self._require_cluster()
        if not self.is_leader:
            leader = self.leader()
            raise NotLeader(leader) if leader is not None else NoLeader()

    async def join(self, member: Member) -> bool:
        """Add a server as a non-voter; the leader promotes it once it has caught up.

        Idempotent for the same id and address. Returns whether it is a voter by the time the
        call returns (it waits a bounded time for the promotion, so joins can follow each other).
        """
        self._require_leader()
        config = self.core.configuration
        current = config.get(member.id)
        if current is not None and current.address != member.address:
            raise Conflict(f"Node id {member.id!r} is already a member at {current.address}.")
        clash = next((m for m in config.members if m.address == member.address), None)
        if clash is not None and clash.id != member.id:
            raise Conflict(f"Address {member.address} already belongs to member {clash.id!r}.")
        if current is None:
            await _probe(member.address, JOIN_REACH_TIMEOUT, self.tls)
            if not member.http_address:
                member = await self._with_http_address(member)
            await self._change(lambda: self.core.propose_add(member))
        return await self._until(lambda: _is_voter(self.core.configuration, member.id), 30.0)

    async def _with_http_address(self, member: Member) -> Member:
        """The guide's join names only the Raft address; redirects need the HTTP one too.

        Ask the new server itself (its /cluster/status reports it), on the Raft host at our own
        HTTP port, as the guide's deployments use one port everywhere; fall back to that guess.
        """
        host, _ = split_host_port(member.address)
        guess = f"{host}:{self.settings.port}"
        try:
            timeout = aiohttp.ClientTimeout(total=2)
            url = self.http_url(guess) + "/cluster/status"
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, ssl=self.client_ssl()) as resp,
            ):
                body = await resp.json()
            if body.get("node_id") == member.id and body.get("http_address"):
                guess = str(body["http_address"])
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            pass
        return Member(member.id, member.address, member.voter, guess)

    async def leave(self, node_id: str) -> list[Member]:
        """Remove a member; returns the configuration that results."""
        self._require_leader()
        if self.core.configuration.get(node_id) is None:
            raise NotFound(f"No member with id {node_id!r}.")
        if node_id == self.node_id:
            # Hand leadership over first, then ask the new leader to remove us. We will never
            # hear of our own removal (nobody replicates to a removed server): its answer is
            # the only up-to-date view of the configuration.
            await self.transfer_leadership(None)
            return await self._forward_leave(node_id)
        await self._change(lambda: self.core.propose_remove(node_id))
        return self.peers()

    async def transfer_leadership(self, node_id: str | None) -> str:
        self._require_leader()
        try:
            target = self.core.transfer_leadership(node_id)
        except ProposalRejected as exc:
            raise Conflict(f"Leadership cannot be transferred: {exc.reason}.") from None
        self.runtime.poke()
        deadline = 2 * self.settings.raft.election_timeout + 1.0
        if not await self._until(lambda: self.core.leader_id == target, deadline):
            raise Conflict(f"Leadership transfer to {target!r} did not complete in time.")
        return target

    async def _change(self, propose: Callable[[], tuple[int, int]]) -> None:
        try:
            await self.runtime.run_config_change(propose)
        except ProposalRejected as exc:
            raise Conflict(f"Membership change refused: {exc.reason}.") from None

    async def _until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll a condition on the core (membership operations are rare and short)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(TICK_SECONDS)
        return True

    async def _forward_leave(self, node_id: str) -> list[Member]:
        leader = self.leader()
        if leader is None or not leader.http_address:
            raise NoLeader("Leadership moved but the new leader is not known yet; retry.")
        url = self.http_url(leader.http_address) + f"/cluster/leave/{node_id}"
        async with (
            aiohttp.ClientSession() as session,
            session.delete(url, ssl=self.client_ssl()) as resp,
        ):
            if resp.status != 200:
                raise Unavailable(f"The new leader refused to remove {node_id!r}: {resp.status}.")
            body = await resp.json()
        return [
            Member(p["id"], p["address"], bool(p["voter"]), p.get("http_address", ""))
            for p in body.get("peers", [])
        ]

    async def bootstrap(self) -> None:
        self._require_cluster()
        if not self.core.is_empty:
            raise Conflict("This node already has Raft state; only an empty node can bootstrap.")
        self.core.bootstrap(self.me())
        self.runtime.poke()

    async def take_snapshot(self) -> SnapshotInfo:
        saved = await self.runtime.take_snapshot()
        return SnapshotInfo(saved.meta.index, saved.meta.term, saved.size_bytes)


JOIN_REACH_TIMEOUT = 5.0
TLS_RELOAD_INTERVAL = 1.0
ACL_CHECK_INTERVAL = 1.0

log = logging.getLogger("konsul.node")


def _is_voter(config: Configuration, node_id: str) -> bool:
    member = config.get(node_id)
    return member is not None and member.voter


async def _probe(address: str, timeout: float, tls: Tls | None) -> None:
    """Refuse to add a server nobody can reach, or (with TLS) one whose certificate does not
    verify for that address: the configuration would only gain a voter nobody can talk to."""
    try:
        host, port = split_host_port(address)
    except ValueError:
        raise BadRequest(f"address must be host:port; got {address!r}.") from None
    try:
        context = tls.client() if tls is not None else None
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            ),
            timeout,
        )
    except ssl.SSLCertVerificationError as exc:  # (before OSError: it is one)
        _refused(tls, address, exc)
        raise PeerNotTrusted(
            f"The TLS certificate of {address} did not verify ({exc.verify_message}); "
            "the configuration is unchanged."
        ) from None
    except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError) as exc:
        if tls is None:
            raise Timeout(
                f"{address} closed the connection; the configuration is unchanged."
            ) from None
        _refused(tls, address, exc)
        raise PeerNotTrusted(
            f"{address} did not complete a TLS handshake (it does not speak TLS, or refused "
            f"our certificate: {exc or type(exc).__name__}); the configuration is unchanged."
        ) from None
    except (OSError, TimeoutError):
        raise Timeout(
            f"Could not reach {address} within {timeout:g}s; the configuration is unchanged."
        ) from None
    writer.close()


def _refused(tls: Tls | None, address: str, exc: BaseException) -> None:
    if tls is not None:
        tls.refused("outbound", address, exc)


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
