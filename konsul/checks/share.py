"""Who probes: the members the leader currently hears from, and this member's share of them.

**Liveness.** A member takes part in probing while the leader hears its reports: every follower
posts to the leader every ``REPORT_EVERY`` (its changed results, often none), and the leader
answers with the members it heard from within ``DEAD_AFTER`` (itself always). That answer is
the set every member hashes over (``konsul.checks.assign``), so all of them agree on it within
one report. A member that dies, is partitioned away from the leader, or cannot report (ACLs on
and no token) drops out of the set ``DEAD_AFTER`` after its last report and its checks move
to the others; Raft membership alone would keep a dead member in. One late report does not
reshuffle anything: ``DEAD_AFTER`` is six reports long. Nor does a leader whose own event loop
stalled (a pause of the whole process): its liveness clock advances at most ``MAX_STEP`` per
look, so the reports it could not read meanwhile are not counted as missed.

A new leader first keeps the set it knew (from its own reports to the old leader) for
``DEAD_AFTER``, while every live follower finds it, and only then trusts what it hears: a
leadership change moves no check, except those of an old leader that died (after
``DEAD_AFTER``). A follower keeps its last answer while it cannot reach a leader, and before
its first answer (a member just started) assumes every voter probes.

**Share.** This member's share is every HTTP/TCP check whose owner among that set it is. The
worker is told only the differences: a check whose owner and definition did not change keeps
its probe (and its rhythm) through any leader change or membership change.

**First runs.** A worker that starts (a member starting, a restarted worker) spreads its first
probes over their interval; a check registered (or redefined) since the last look runs at
once; a check moved here from another member runs within ``interval - 2 * MOVE_LATENCY``
(at least a quarter of its interval), so that, counting the time its loss takes to notice,
it is probed again within about one interval of the last probe its old owner made.
"""

from __future__ import annotations

import math
import random
from typing import Any

from konsul.checks.assign import owner
from konsul.store import Check
from konsul.store.catalog import Catalog

REPORT_EVERY = 0.2  # seconds between a follower's reports to the leader
DEAD_AFTER = 1.2  # a member not heard from for this long probes nothing (six reports)
MAX_STEP = 0.3  # the most one look at the clock counts: a stalled leader is not a dead follower
MOVE_LATENCY = DEAD_AFTER + REPORT_EVERY  # from a member's death to its checks' new owners
DEFAULT_INTERVAL = 10.0
DEFAULT_TIMEOUT = 5.0

Definition = tuple[str, str, float, float]  # kind, target, interval, timeout


class Liveness:
    """The members that probe, as this member knows them (see the module docstring)."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.members: tuple[str, ...] | None = None  # None: never told, never led
        self._heard: dict[str, float] = {}  # on the liveness clock
        self._leading_since: float | None = None
        self._kept: set[str] = set()
        self._clock = 0.0
        self._last: float | None = None

    def _tick(self, now: float) -> float:
        """The liveness clock: real time, except that a stall counts as ``MAX_STEP``."""
        if self._last is not None:
            self._clock += min(max(0.0, now - self._last), MAX_STEP)
        self._last = now
        return self._clock

    def heard(self, member: str, now: float) -> None:
        self._heard[member] = self._tick(now)

    def lead(self, now: float, voters: tuple[str, ...]) -> tuple[str, ...]:
        """On the leader: the members heard from lately (and, for ``DEAD_AFTER`` after it
        took over, those it already counted)."""
        now = self._tick(now)
        if self._leading_since is None:
            self._leading_since = now
            self._kept = set(self.members if self.members is not None else voters)
        warming = now - self._leading_since < DEAD_AFTER
        if len(self._heard) > len(voters):  # (reports name any id: keep only members')
            self._heard = {v: t for v, t in self._heard.items() if v in voters}
        self.members = tuple(sorted(
            v for v in voters
            if v == self.me
            or now - self._heard.get(v, -math.inf) < DEAD_AFTER
            or (warming and v in self._kept)
        ))
        return self.members

    def follow(self, voters: tuple[str, ...]) -> tuple[str, ...]:
        """On a follower: the leader's last answer (every voter before the first one)."""
        if self._leading_since is not None:
            self._leading_since = None
            self._heard.clear()
        return self.members if self.members is not None else voters

    def learned(self, members: tuple[str, ...]) -> None:
        self.members = members


def definition(check: Check) -> Definition:
    return (
        check.kind,
        check.target,
        check.interval if check.interval is not None else DEFAULT_INTERVAL,
        check.timeout if check.timeout is not None else DEFAULT_TIMEOUT,
    )


class Share:
    """This member's share, kept in step with the catalog and the members; ``sync`` returns
    the worker's orders (``konsul.checks.worker``) for what changed."""

    def __init__(self, me: str, rng: random.Random) -> None:
        self.me = me
        self.assigned: dict[str, Definition] = {}
        self._rng = rng
        self._members: tuple[str, ...] = ()
        self._owners: dict[str, str | None] = {}
        self._known: set[str] | None = None  # every check id at the last sync
        self._key: tuple[object, ...] | None = None
        self._fresh = True  # the worker holds nothing: spread every first run
        self.set_orders = 0  # probes (re)started: what a leader change must not move

    def worker_started(self) -> None:
        self.assigned = {}
        self._key = None
        self._fresh = True

    def sync(self, catalog: Catalog, members: tuple[str, ...], eligible: bool
             ) -> list[list[Any]]:
        # Definitions change only with services_index; statuses do not matter here.
        key = (id(catalog), catalog.services_index, members, eligible)
        if key == self._key:
            return []
        self._key = key
        if members != self._members:
            self._members, self._owners = members, {}
        desired: dict[str, Definition] = {}
        owners: dict[str, str | None] = {}
        if eligible and self.me in members:
            for check in catalog.checks.values():
                if check.kind == "ttl":
                    continue
                cid = check.id
                who = owners[cid] = (
                    self._owners[cid] if cid in self._owners else owner(cid, members)
                )
                if who == self.me:
                    desired[cid] = definition(check)
        self._owners = owners
        orders: list[list[Any]] = [["drop", cid] for cid in self.assigned if cid not in desired]
        for cid, wanted in desired.items():
            old = self.assigned.get(cid)
            if old != wanted:
                self.set_orders += 1
                orders.append(["set", cid, *wanted, self._first_run(cid, wanted[2], old)])
        self.assigned = desired
        self._known = set(catalog.checks)
        self._fresh = False
        return orders

    def _first_run(self, cid: str, interval: float, old: Definition | None) -> float:
        if self._fresh or self._known is None:  # a worker or a member starting
            return self._rng.uniform(0, interval)
        if old is not None or cid not in self._known:  # redefined, or registered just now
            return 0.0
        return self._rng.uniform(0, max(interval - 2 * MOVE_LATENCY, interval / 4))  # moved
