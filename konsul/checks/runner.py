"""The check runner of one member: its share of the probes, and (on the leader) the timers.

Every member runs ``CheckRunner``:

- **Probes** (HTTP and TCP checks) are spread over the members (``konsul.checks.share``: the
  members the leader hears from, rendezvous-hashed by ``konsul.checks.assign``). Each member
  runs its share in a child process, its probe worker (``konsul.checks.worker``), so probes
  never delay the Raft heartbeats sent from the member's event loop. HTTP checks: GET the URL
  every ``interval`` with ``timeout``: 2xx passing, 429 warning, anything else (or no answer)
  critical. TCP checks: a connect within ``timeout`` is passing.
- **Results go through the leader.** The worker sends every result to its member, which
  compares it with its replica and keeps only *changes*. The leader proposes them; a follower
  posts them to the leader (``POST /cluster/checks/report``, every ``REPORT_EVERY``, a post
  that doubles as its liveness signal), which checks them against its own replica and proposes
  them. Each carries the check's ``update_index`` the member saw (``check_probe``'s ``seen``):
  a result that reaches the log after a newer report of the same check (another member's, the
  check moved meanwhile; a re-registration) is ignored on every replica.
- **Timers** stay with the leader (``konsul.checks.timers``): TTL checks, service heartbeats,
  ``deregister_critical_after``. They stop when leadership is lost, not on a moment of not
  being ready (between a commit and its apply).

A leader change restarts no probe: the share depends on the members, not on who leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from konsul.checks.process import ProbeWorker
from konsul.checks.share import REPORT_EVERY, Liveness, Share
from konsul.checks.timers import LeaderTimers
from konsul.errors import KonsulError, NoLeader, NotLeader
from konsul.logs import event
from konsul.metrics import Metrics
from konsul.peers import PeerHTTP
from konsul.raft.types import Member
from konsul.store import Check, StateMachine, commands

log = logging.getLogger("konsul.checks")

SCAN_SECONDS = 0.1
REPORT_PATH = "/cluster/checks/report"
REPORT_TIMEOUT = aiohttp.ClientTimeout(total=2, sock_connect=0.5)
RESEND_AFTER = 5.0  # a change the leader took but did not commit is sent again after this

Result = tuple[str, str, int]  # status, output, seen (the check's update_index)


class CheckHost(Protocol):
    """What the runner needs of its node (``konsul.node.Node``)."""

    @property
    def node_id(self) -> str: ...
    @property
    def store(self) -> StateMachine: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def peer_http(self) -> PeerHTTP: ...
    def is_ready(self) -> bool: ...
    def leader(self) -> Member | None: ...
    def peers(self) -> list[Member]: ...
    def report_token(self) -> str | None: ...
    async def propose(self, data: bytes) -> object: ...


@dataclass
class CheckRunner:
    node: CheckHost
    rng: random.Random = field(default_factory=random.Random)
    _decisions: set[asyncio.Task[None]] = field(default_factory=set)
    _proposing: dict[str, Result] = field(default_factory=dict)  # leader: in flight
    _pending: dict[str, Result] = field(default_factory=dict)  # follower: for the next report
    _sent: dict[str, tuple[Result, float]] = field(default_factory=dict)  # follower: reported
    _members: tuple[str, ...] = ()  # as the last scan saw them
    # Reports have their own connection pool: a connection they keep warm to a leader that
    # then goes silent must not be the one a forwarded write picks (it would wait on it for
    # the full peer timeout instead of failing to connect and trying the next leader).
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        me = self.node.node_id
        self.timers = LeaderTimers(lambda: self.node.store, self._decide)
        self.liveness = Liveness(me)
        self.share = Share(me, self.rng)
        self.worker = ProbeWorker(me, self._worker_started, self._results)

    async def run(self) -> None:
        helpers = [asyncio.create_task(self.worker.run(), name="probe-worker"),
                   asyncio.create_task(self._report_loop(), name="check-reports")]
        try:
            while True:
                self._scan(time.monotonic())
                await asyncio.sleep(SCAN_SECONDS)
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._session is not None:
                await self._session.close()

    def _scan(self, now: float) -> None:
        node = self.node
        voters = self._voters()
        if node.is_leader:
            if node.is_ready():
                self.timers.scan(now)
            # (a leader not ready for a moment, between a commit and its apply, keeps its
            # timers; probes never depended on it: restarting them on every such moment fired
            # them 1.7-3.7 times as often as configured, #16)
            members = self.liveness.lead(now, voters)
        else:
            if self.timers.active():
                self.timers.forget()
            members = self.liveness.follow(voters)
        if members != self._members:
            event(log, logging.INFO, "members probing checks", members=",".join(members),
                  before=",".join(self._members))
            self._members = members
        eligible = node.is_leader or node.report_token() is not None
        self.worker.send(self.share.sync(node.store.catalog, members, eligible))
        node.metrics.checks_assigned.set(len(self.share.assigned))
        node.metrics.check_members.set(len(members))

    # ------------------------------------------------------------------------- results

    def _worker_started(self) -> None:
        self.share.worker_started()
        self.node.metrics.check_worker_starts.inc()

    def _results(self, results: list[list[str]]) -> None:
        """What the worker found: compared with the replica, changes kept."""
        self.node.metrics.check_probes.inc(len(results))
        checks = self.node.store.catalog.checks
        for cid, status, output in results:
            check = checks.get(cid)
            if check is not None and check.kind != "ttl" and cid in self.share.assigned:
                self._offer(check, status, output, check.update_index)

    def accept_report(self, member: str, results: list[tuple[str, str, str, int]]
                      ) -> tuple[str, ...]:
        """On the leader: a follower's changed results (each with the ``update_index`` it
        saw); returns the members that probe. Raises ``BadRequest`` for a malformed status or
        output, ``NotLeader``/``NoLeader`` on a follower."""
        node = self.node
        if not node.is_leader:
            leader = node.leader()
            raise NotLeader(leader) if leader is not None else NoLeader()
        now = time.monotonic()
        self.liveness.heard(member, now)
        checks = node.store.catalog.checks
        for cid, status, output, seen in results:
            check = checks.get(cid)
            if check is not None and check.kind != "ttl" and check.update_index == seen:
                self._offer(check, status, output, seen)
        return self.liveness.lead(now, self._voters())

    def _voters(self) -> tuple[str, ...]:
        """The voters of the current configuration, sorted: what the probes are spread over."""
        return tuple(sorted(m.id for m in self.node.peers() if m.voter))

    def _offer(self, check: Check, status: str, output: str, seen: int) -> None:
        cid = check.id
        if (check.status, check.output) == (status, output):
            self._pending.pop(cid, None)
            return
        result = (status, output, seen)
        if self.node.is_leader:
            if self._proposing.get(cid) == result:
                return
            command = commands.check_update(cid, status, output, from_runner=True, seen=seen)
            self._proposing[cid] = result
            self._background(self._propose_result(cid, result, command))
        else:
            sent = self._sent.get(cid)
            if sent is None or sent[0] != result or time.monotonic() - sent[1] > RESEND_AFTER:
                self._pending[cid] = result

    async def _propose_result(self, cid: str, result: Result, command: bytes) -> None:
        try:
            await self._propose(command, f"check {result[0]}", cid)
        finally:
            if self._proposing.get(cid) == result:
                del self._proposing[cid]

    # ------------------------------------------------------------------------- reports

    async def _report_loop(self) -> None:
        """A follower posts its changes to the leader, and learns who probes."""
        while True:
            await asyncio.sleep(REPORT_EVERY)
            node = self.node
            token = node.report_token()
            leader = node.leader()
            if node.is_leader or token is None or leader is None or not leader.http_address:
                continue
            batch, self._pending = self._pending, {}
            try:
                members = await self._report(leader, token, batch)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                for cid, result in batch.items():
                    self._pending.setdefault(cid, result)
                event(log, logging.DEBUG, "check report not delivered", leader=leader.id,
                      error=str(exc) or type(exc).__name__)
                continue
            now = time.monotonic()
            self._sent = {cid: sent for cid, sent in self._sent.items()
                          if now - sent[1] <= RESEND_AFTER}
            self._sent.update((cid, (result, now)) for cid, result in batch.items())
            self.liveness.learned(members)

    async def _report(self, leader: Member, token: str, batch: dict[str, Result]
                      ) -> tuple[str, ...]:
        body = {"node_id": self.node.node_id,
                "results": [[cid, *result] for cid, result in batch.items()]}
        headers = {"X-Konsul-Token": token} if token else {}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=REPORT_TIMEOUT)
        peers = self.node.peer_http
        async with self._session.post(
            peers.url(leader.http_address) + REPORT_PATH, json=body, headers=headers,
            ssl=peers.ssl(), allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                raise ValueError(f"the leader answered {resp.status}")
            answer = await resp.json()
        members = answer.get("members") if isinstance(answer, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ValueError("the leader's answer has no member list")
        return tuple(members)

    # ------------------------------------------------------------------------ proposals

    def _decide(self, command: bytes, what: str, ident: str) -> None:
        """Commit a timer's decision in the background; the scan goes on meanwhile."""
        self._background(self._propose(command, what, ident))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._decisions.add(task)
        task.add_done_callback(self._decisions.discard)

    async def _propose(self, command: bytes, what: str, ident: str) -> None:
        try:
            await self.node.propose(command)
        except KonsulError as exc:  # lost leadership or no quorum: the next leader decides again
            event(
                log,
                logging.DEBUG,
                "check decision not committed",
                what=what,
                id=ident,
                error=type(exc).__name__,
            )
        else:
            event(log, logging.INFO, "check decision committed", what=what, id=ident)
