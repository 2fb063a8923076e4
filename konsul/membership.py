"""Cluster membership, decided on the leader: join, leave, leadership transfer, bootstrap.

Each operation checks where it may run (a standalone node refuses all of them with
``ClusteringDisabled``; a follower answers ``NotLeader`` or ``NoLeader``), proposes one change
to the Raft core, and waits a bounded time for its effect (a promotion, a new leader). The core
itself refuses what Raft forbids (a second change while one is pending, removing the last
voter): that refusal becomes ``Conflict``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

import aiohttp

from konsul.config import Settings
from konsul.errors import (
    BadRequest,
    ClusteringDisabled,
    Conflict,
    NoLeader,
    NotFound,
    NotLeader,
    PeerNotTrusted,
    Timeout,
    Unavailable,
)
from konsul.net import parse_host_port, probe
from konsul.peers import PeerHTTP
from konsul.raft.core import ProposalRejected, RaftCore, Role
from konsul.raft.identity import ClusterIdentity
from konsul.raft.runtime import TICK_SECONDS, RaftRuntime
from konsul.raft.types import Configuration, Member
from konsul.tls import Tls

log = logging.getLogger("konsul.membership")

JOIN_REACH_TIMEOUT = 5.0  # a new server must accept a connection within this long
PROMOTION_WAIT = 30.0  # how long a join waits for the new member to become a voter
STATUS_TIMEOUT = aiohttp.ClientTimeout(total=2)


def leader_of(core: RaftCore) -> Member | None:
    """The member this node believes leads (None: no leader known)."""
    leader_id = core.leader_id
    return core.configuration.get(leader_id) if leader_id else None


class Membership:
    def __init__(
        self,
        runtime: RaftRuntime,
        settings: Settings,
        me: Member,
        peers: PeerHTTP,
        tls: Tls | None,
        identity: ClusterIdentity,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._me = me
        self._peers = peers
        self._tls = tls
        self._identity = identity

    @property
    def _core(self) -> RaftCore:
        return self._runtime.core  # (replaced when a snapshot is installed: never cached)

    def _require_cluster(self) -> None:
        if not self._settings.raft.enabled:
            raise ClusteringDisabled()

    def _require_leader(self) -> None:
        self._require_cluster()
        if self._core.role != Role.LEADER:
            leader = leader_of(self._core)
            raise NotLeader(leader) if leader is not None else NoLeader()

    # ------------------------------------------------------------------------------ join

    async def join(self, member: Member) -> bool:
        """Add a server as a non-voter; the leader promotes it once it has caught up.

        Idempotent for the same id and address. Returns whether it is a voter by the time the
        call returns (it waits a bounded time for the promotion, so joins can follow each other).
        """
        self._require_leader()
        config = self._core.configuration
        current = config.get(member.id)
        if current is not None and current.address != member.address:
            raise Conflict(f"Node id {member.id!r} is already a member at {current.address}.")
        clash = next((m for m in config.members if m.address == member.address), None)
        if clash is not None and clash.id != member.id:
            raise Conflict(f"Address {member.address} already belongs to member {clash.id!r}.")
        if current is None:
            await self._reachable(member.address)
            member, cluster = await self._ask_status(member)
            if cluster and cluster != self._identity.value:
                raise Conflict(
                    f"{member.id} at {member.address} belongs to another cluster ({cluster}): "
                    "it can never exchange a message with this one. Empty its data directory "
                    "to join it as a new member; the configuration is unchanged."
                )
            await self._change(lambda: self._core.propose_add(member))
        return await self._until(
            lambda: _is_voter(self._core.configuration, member.id), PROMOTION_WAIT
        )

    async def _reachable(self, address: str) -> None:
        """Refuse to add a server nobody can reach, or (with TLS) one whose certificate does not
        verify for that address: the configuration would only gain a voter nobody can talk to."""
        try:
            parse_host_port(address)
        except ValueError:
            raise BadRequest(f"address must be host:port; got {address!r}.") from None
        try:
            await probe(address, JOIN_REACH_TIMEOUT, self._tls.client() if self._tls else None)
        except ssl.SSLCertVerificationError as exc:  # (first: it is an OSError and a ValueError)
            self._refused(address, exc)
            raise PeerNotTrusted(
                f"The TLS certificate of {address} did not verify ({exc.verify_message}); "
                "the configuration is unchanged."
            ) from None
        except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError) as exc:
            if self._tls is None:
                raise Timeout(
                    f"{address} closed the connection; the configuration is unchanged."
                ) from None
            self._refused(address, exc)
            raise PeerNotTrusted(
                f"{address} did not complete a TLS handshake (it does not speak TLS, or refused "
                f"our certificate: {exc or type(exc).__name__}); the configuration is unchanged."
            ) from None
        except (OSError, TimeoutError):
            raise Timeout(
                f"Could not reach {address} within {JOIN_REACH_TIMEOUT:g}s; the configuration "
                "is unchanged."
            ) from None

    def _refused(self, address: str, exc: BaseException) -> None:
        if self._tls is not None:
            self._tls.refused("outbound", address, exc)

    async def _ask_status(self, member: Member) -> tuple[Member, str]:
        """The new server's own word (its /cluster/status): its HTTP address, which redirects
        need and the guide's join does not give, and the cluster it belongs to ("" if none).

        Asked at its HTTP address if given, else on the Raft host at our own HTTP port (the
        guide's deployments use one port everywhere), which is also the fallback address.
        """
        host, _ = parse_host_port(member.address)
        address = member.http_address or f"{host}:{self._settings.port}"
        cluster = ""
        try:
            async with self._peers.request(
                "GET", address, "/cluster/status", timeout=STATUS_TIMEOUT
            ) as resp:
                body = await resp.json()
            if body.get("node_id") == member.id:
                address = member.http_address or str(body.get("http_address") or address)
                cluster = str(body.get("cluster_id") or "")
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            pass
        return Member(member.id, member.address, member.voter, address), cluster

    # ----------------------------------------------------------------------------- leave

    async def leave(self, node_id: str) -> list[Member]:
        """Remove a member; returns the configuration that results."""
        self._require_leader()
        if self._core.configuration.get(node_id) is None:
            raise NotFound(f"No member with id {node_id!r}.")
        if node_id == self._me.id:
            # Hand leadership over first, then ask the new leader to remove us. We will never
            # hear of our own removal (nobody replicates to a removed server): its answer is
            # the only up-to-date view of the configuration.
            await self.transfer_leadership(None)
            return await self._forward_leave(node_id)
        await self._change(lambda: self._core.propose_remove(node_id))
        return list(self._core.configuration.members)

    async def _forward_leave(self, node_id: str) -> list[Member]:
        leader = leader_of(self._core)
        if leader is None or not leader.http_address:
            raise NoLeader("Leadership moved but the new leader is not known yet; retry.")
        path = f"/cluster/leave/{node_id}"
        async with self._peers.request("DELETE", leader.http_address, path) as resp:
            if resp.status != 200:
                raise Unavailable(f"The new leader refused to remove {node_id!r}: {resp.status}.")
            body = await resp.json()
        return [
            Member(p["id"], p["address"], bool(p["voter"]), p.get("http_address", ""))
            for p in body.get("peers", [])
        ]

    # -------------------------------------------------------------- transfer, bootstrap

    async def transfer_leadership(self, node_id: str | None) -> str:
        """Hand leadership to ``node_id`` (or the most caught-up voter); returns the new
        leader's id once it leads."""
        self._require_leader()
        try:
            target = self._core.transfer_leadership(node_id)
        except ProposalRejected as exc:
            raise Conflict(f"Leadership cannot be transferred: {exc.reason}.") from None
        self._runtime.poke()
        deadline = 2 * self._settings.raft.election_timeout + 1.0
        if not await self._until(lambda: self._core.leader_id == target, deadline):
            raise Conflict(f"Leadership transfer to {target!r} did not complete in time.")
        return target

    async def bootstrap(self) -> None:
        """Make this empty node a one-voter cluster."""
        self._require_cluster()
        if not self._core.is_empty or self._identity.value:
            raise Conflict("This node already has Raft state; only an empty node can bootstrap.")
        self._identity.found()  # a new cluster
        self._core.bootstrap(self._me)
        self._runtime.poke()

    # ------------------------------------------------------------------------- helpers

    async def _change(self, propose: Callable[[], tuple[int, int]]) -> None:
        try:
            await self._runtime.run_config_change(propose)
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


def _is_voter(config: Configuration, node_id: str) -> bool:
    member = config.get(node_id)
    return member is not None and member.voter
