"""The leader's timers: TTL checks, service heartbeats, ``deregister_critical_after``.

The state machine never reads the clock, so every time-based decision is taken here and written
to the log as a command that names what it saw (``seen`` indices): if a heartbeat or an update
slipped in between the decision and its commit, the state machine ignores the stale command.

Timers start when this node becomes leader (a new leader gives every TTL a full period of
grace, as Consul does), and restart whenever the replica shows a newer heartbeat or update.
Only the checks and services that have a timer are walked on each scan (the list is rebuilt
when the catalog's definitions change), not every HTTP/TCP check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from konsul.store import Check, StateMachine, commands


@dataclass(slots=True)
class _Timer:
    """A deadline armed when ``seen`` (an index of the replica) was last observed."""

    seen: int
    since: float


Decide = Callable[[bytes, str, str], None]  # (command, what, id): commit in the background


@dataclass
class LeaderTimers:
    store: Callable[[], StateMachine]
    decide: Decide
    _ttl: dict[str, _Timer] = field(default_factory=dict)
    _heartbeats: dict[str, _Timer] = field(default_factory=dict)
    _critical: dict[str, _Timer] = field(default_factory=dict)
    _timed: tuple[list[str], list[str]] = ([], [])  # check ids, service ids with a timer
    _timed_key: tuple[int, int] | None = None

    def active(self) -> bool:
        return bool(self._ttl or self._heartbeats or self._critical)

    def forget(self) -> None:
        self._ttl.clear()
        self._heartbeats.clear()
        self._critical.clear()
        self._timed_key = None

    def scan(self, now: float) -> None:
        catalog = self.store().catalog
        check_ids, service_ids = self._with_timers()
        for timers in (self._ttl, self._critical):
            for gone in [cid for cid in timers if cid not in catalog.checks]:
                del timers[gone]
        for gone in [sid for sid in self._heartbeats if sid not in catalog.services]:
            del self._heartbeats[gone]
        for cid in check_ids:
            check = catalog.checks.get(cid)
            if check is None:
                continue
            if check.kind == "ttl":
                self._ttl_due(check, now)
            self._critical_due(check, now)
        for sid in service_ids:
            svc = catalog.services.get(sid)
            if svc is None or svc.ttl is None:
                continue
            timer = _arm(self._heartbeats, svc.id, svc.heartbeat_index, now)
            if now - timer.since >= svc.ttl:
                self.decide(commands.service_expire(svc.id, timer.seen), "service expired", svc.id)
                timer.since = now  # wait a full period before asking again

    def _with_timers(self) -> tuple[list[str], list[str]]:
        """The checks (TTL, or with deregister_critical_after) and services (with a heartbeat
        TTL) that have timers; rebuilt only when a definition changed (services_index)."""
        catalog = self.store().catalog
        key = (id(catalog), catalog.services_index)
        if key != self._timed_key:
            self._timed_key = key
            self._timed = (
                [c.id for c in catalog.checks.values()
                 if c.kind == "ttl" or c.deregister_critical_after is not None],
                [s.id for s in catalog.services.values() if s.ttl is not None],
            )
        return self._timed

    def _ttl_due(self, check: Check, now: float) -> None:
        timer = _arm(self._ttl, check.id, check.update_index, now)
        if check.ttl is not None and now - timer.since >= check.ttl and check.status != "critical":
            self.decide(commands.check_expire(check.id, timer.seen), "ttl expired", check.id)
            timer.since = now

    def _critical_due(self, check: Check, now: float) -> None:
        if check.deregister_critical_after is None or check.status != "critical":
            self._critical.pop(check.id, None)
            return
        timer = _arm(self._critical, check.id, check.status_index, now)
        if now - timer.since >= check.deregister_critical_after:
            self.decide(commands.check_reap(check.id, timer.seen), "reaped", check.id)
            timer.since = now


def _arm(timers: dict[str, _Timer], key: str, seen: int, now: float) -> _Timer:
    """The timer for ``key``, restarted if the replica shows a newer ``seen`` index."""
    timer = timers.get(key)
    if timer is None or timer.seen != seen:
        timer = timers[key] = _Timer(seen, now)
    return timer
