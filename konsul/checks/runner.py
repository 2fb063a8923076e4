"""The health-check runner: it runs on the leader only and commits *changes* through Raft.

The state machine never reads the clock, so every time-based decision is taken here and written
to the log as a command that names what it saw (``seen`` indices): if a heartbeat or an update
slipped in between the decision and its commit, the state machine ignores the stale command.

- HTTP checks: GET the URL every ``interval`` with ``timeout``: 2xx passing, 429 warning, anything
  else (or no answer) critical. TCP checks: a connect within ``timeout`` is passing.
  A result is proposed only when status or output differs from what the replica holds.
- TTL checks: critical when not updated within their TTL (``check_expire``).
- Service heartbeats: an instance registered with ``ttl`` is deregistered when heartbeats stop
  (``service_expire``).
- ``deregister_critical_after``: a check critical for that long deregisters its service
  (``check_reap``).

Timers start when this node becomes leader (a new leader gives every TTL a full period of
grace, as Consul does), and restart whenever the replica shows a newer heartbeat or update.
The probes a new leader starts wait a random part of their interval before their first run,
so it does not fire all of them in one burst (a check registered while it leads runs at once:
its status shows within a moment). Probes run for as long as this node leads: a moment of not
being ready (between a commit and its apply) neither stops nor restarts them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from konsul.errors import KonsulError
from konsul.logs import event
from konsul.net import probe
from konsul.store import Check, StateMachine, commands

log = logging.getLogger("konsul.checks")

SCAN_SECONDS = 0.1
DEFAULT_INTERVAL = 10.0
DEFAULT_TIMEOUT = 5.0
MAX_OUTPUT = 4096


@dataclass(slots=True)
class _Timer:
    """A deadline armed when ``seen`` (an index of the replica) was last observed."""

    seen: int
    since: float


class CheckHost(Protocol):
    """What the runner needs of its node (``konsul.node.Node``)."""

    @property
    def store(self) -> StateMachine: ...
    @property
    def is_leader(self) -> bool: ...
    def is_ready(self) -> bool: ...
    async def propose(self, data: bytes) -> object: ...


@dataclass
class CheckRunner:
    node: CheckHost
    _decisions: set[asyncio.Task[None]] = field(default_factory=set)
    _probes: dict[str, tuple[tuple[object, ...], asyncio.Task[None]]] = field(default_factory=dict)
    _ttl: dict[str, _Timer] = field(default_factory=dict)
    _heartbeats: dict[str, _Timer] = field(default_factory=dict)
    _critical: dict[str, _Timer] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None
    _leading = False  # scanned since this node became leader: new probes are new checks

    async def run(self) -> None:
        """Scan the replica while leader; stop every probe when leadership is lost."""
        try:
            while True:
                if not self.node.is_leader:
                    if self._probes or self._ttl or self._heartbeats or self._critical:
                        self._forget_all()
                elif self.node.is_ready():
                    self._scan(time.monotonic())
                # (a leader not ready for a moment keeps its probes and timers: restarting
                # them fired every probe at once, 1.7-3.7 times as often as configured, #16)
                await asyncio.sleep(SCAN_SECONDS)
        finally:
            self._forget_all()
            if self._session is not None:
                await self._session.close()

    def _forget_all(self) -> None:
        self._leading = False
        for _, task in self._probes.values():
            task.cancel()
        self._probes.clear()
        self._ttl.clear()
        self._heartbeats.clear()
        self._critical.clear()

    def _scan(self, now: float) -> None:
        catalog = self.node.store.catalog
        live_checks = catalog.checks
        for gone in [cid for cid in self._probes if cid not in live_checks]:
            self._probes.pop(gone)[1].cancel()
        for timers in (self._ttl, self._critical):
            for gone in [cid for cid in timers if cid not in live_checks]:
                del timers[gone]
        for gone in [sid for sid in self._heartbeats if sid not in catalog.services]:
            del self._heartbeats[gone]

        for check in list(live_checks.values()):
            if check.kind == "ttl":
                self._ttl_due(check, now)
            else:
                self._ensure_probe(check, stagger=not self._leading)
            self._critical_due(check, now)
        for svc in list(catalog.services.values()):
            if svc.ttl is None:
                continue
            timer = _arm(self._heartbeats, svc.id, svc.heartbeat_index, now)
            if now - timer.since >= svc.ttl:
                self._decide(commands.service_expire(svc.id, timer.seen), "service expired", svc.id)
                timer.since = now  # wait a full period before asking again
        self._leading = True

    def _ttl_due(self, check: Check, now: float) -> None:
        timer = _arm(self._ttl, check.id, check.update_index, now)
        if check.ttl is not None and now - timer.since >= check.ttl and check.status != "critical":
            self._decide(commands.check_expire(check.id, timer.seen), "ttl expired", check.id)
            timer.since = now

    def _critical_due(self, check: Check, now: float) -> None:
        if check.deregister_critical_after is None or check.status != "critical":
            self._critical.pop(check.id, None)
            return
        timer = _arm(self._critical, check.id, check.status_index, now)
        if now - timer.since >= check.deregister_critical_after:
            self._decide(commands.check_reap(check.id, timer.seen), "reaped", check.id)
            timer.since = now

    def _ensure_probe(self, check: Check, *, stagger: bool) -> None:
        definition = (check.kind, check.target, check.interval, check.timeout)
        current = self._probes.get(check.id)
        if current is not None and current[0] == definition:
            return
        if current is not None:
            current[1].cancel()
        probe = self._probe_loop(check.id, definition, stagger)
        self._probes[check.id] = (definition, asyncio.create_task(probe, name=f"check-{check.id}"))

    async def _probe_loop(self, check_id: str, definition: tuple[object, ...], stagger: bool
                          ) -> None:
        kind, target, interval, timeout = definition
        period = float(interval) if isinstance(interval, float | int) else DEFAULT_INTERVAL
        limit = float(timeout) if isinstance(timeout, float | int) else DEFAULT_TIMEOUT
        if stagger:  # one of all the probes a new leader starts: spread them over an interval
            await asyncio.sleep(random.uniform(0, period))
        while True:
            if kind == "http":
                status, output = await self._http(str(target), limit)
            else:
                status, output = await _tcp(str(target), limit)
            current = self.node.store.catalog.checks.get(check_id)
            if current is None:
                return
            if (current.status, current.output) != (status, output):
                command = commands.check_update(check_id, status, output, from_runner=True)
                await self._propose(command, f"check {status}", check_id)
            await asyncio.sleep(period)

    async def _http(self, url: str, timeout: float) -> tuple[str, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as resp:
                # The body is left out of the output on purpose: a body that changes on every
                # probe (a timestamp) would otherwise turn each probe into a Raft write.
                output = f"HTTP GET {url}: {resp.status} {resp.reason}"
                if 200 <= resp.status < 300:
                    return "passing", output
                return ("warning" if resp.status == 429 else "critical"), output
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return "critical", f"HTTP GET {url}: {type(exc).__name__}: {exc}"[:MAX_OUTPUT]

    def _decide(self, command: bytes, what: str, ident: str) -> None:
        """Commit a timer's decision in the background; the scan goes on meanwhile."""
        task = asyncio.create_task(self._propose(command, what, ident))
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


def _arm(timers: dict[str, _Timer], key: str, seen: int, now: float) -> _Timer:
    """The timer for ``key``, restarted if the replica shows a newer ``seen`` index."""
    timer = timers.get(key)
    if timer is None or timer.seen != seen:
        timer = timers[key] = _Timer(seen, now)
    return timer


async def _tcp(address: str, timeout: float) -> tuple[str, str]:
    try:
        await probe(address, timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        return "critical", f"TCP connect {address}: {type(exc).__name__}: {exc}"[:MAX_OUTPUT]
    return "passing", f"TCP connect {address}: Success"
