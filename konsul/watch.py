"""Blocking reads: a parked reader waits on what it read, and only a change to that wakes it.

A reader names its topic:

- ``Key(k)``: one KV key (written, deleted, or under a prefix deleted recursively);
- ``Prefix(p)``: every key under ``p`` (a listing; ``Prefix("")`` is the whole table);
- ``Service(name)``: the instances of one service name and their checks;
- ``Table(t)``: ``"services"`` (any instance), ``"checks"`` (any check), ``"catalog"`` (either),
  ``"acl"``, or ``"applied"`` (anything applied: what has no table of its own, such as the
  Raft configuration).

After each batch the runtime applies, ``notify`` takes what changed from the store
(``StateMachine.take_touched`` and the table indices) and wakes the readers of exactly those
topics: a write to one key costs the readers of other keys nothing (issue #16: with one global
wake-up, 1,000 readers parked on one key cut the writes to *other* keys from 1,400/s to 63/s).

A reader is one future, parked in the set of its topic, and one timer for its wait; waking it
resolves the future (no task is created, then or on the wake-up). Many readers woken at once are
resolved in slices of ``WAKE_SLICE``, one slice per turn of the event loop, so the Raft ticker
and the transport run between slices instead of after thousands of answers. The reader checks
its own condition again when it wakes (``changed``): a topic only says "maybe", never "yes", so
a spurious wake-up costs a re-park and a missed change is impossible (checking and parking
happen with no ``await`` between them).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from konsul.store.machine import Touched

WAKE_SLICE = 200

TableName = Literal["services", "checks", "catalog", "acl", "applied"]


@dataclass(frozen=True, slots=True)
class Key:
    key: str


@dataclass(frozen=True, slots=True)
class Prefix:
    prefix: str


@dataclass(frozen=True, slots=True)
class Service:
    name: str


@dataclass(frozen=True, slots=True)
class Table:
    name: TableName


Topic = Key | Prefix | Service | Table
Waiters = set["asyncio.Future[object]"]

_TIMED_OUT = object()
_RELEASED = object()


class Store(Protocol):
    """What the hub reads of the state machine (``konsul.store.StateMachine``)."""

    watching: bool

    @property
    def services_index(self) -> int: ...
    @property
    def checks_index(self) -> int: ...
    @property
    def acl_index(self) -> int: ...
    def take_touched(self) -> Touched: ...


class WatchHub:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys: dict[str, Waiters] = {}
        self._prefixes: dict[str, Waiters] = {}
        self._prefix_lengths: Counter[int] = Counter()
        self._services: dict[str, Waiters] = {}
        self._tables: dict[TableName, Waiters] = {}
        self._indices = self._table_indices()
        self.parked = 0  # readers waiting now

    # ------------------------------------------------------------------ readers

    async def wait(self, topic: Topic, changed: Callable[[], bool], timeout: float) -> None:
        """Return once ``changed()`` holds (checked now and after every change to ``topic``),
        after ``timeout`` seconds, or when ``release_all`` is called."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not changed():
            if loop.time() >= deadline:
                return
            future: asyncio.Future[object] = loop.create_future()
            waiters = self._park(topic, future)
            timer = loop.call_at(deadline, _resolve, future, _TIMED_OUT)
            self.parked += 1
            try:
                outcome = await future
            finally:
                self.parked -= 1
                timer.cancel()
                if future in waiters:  # still parked: a timeout or a cancelled request
                    waiters.discard(future)
                    if not waiters:
                        self._forget(topic, waiters)
            if outcome is not None:  # timed out, or released for a shutdown
                return

    def _park(self, topic: Topic, future: asyncio.Future[object]) -> Waiters:
        match topic:
            case Key(key):
                self._store.watching = True
                waiters = self._keys.setdefault(key, set())
            case Prefix(prefix):
                self._store.watching = True
                waiters = self._prefixes.get(prefix) or set()
                if not waiters:
                    self._prefixes[prefix] = waiters
                    self._prefix_lengths[len(prefix)] += 1
            case Service(name):
                waiters = self._services.setdefault(name, set())
            case Table(name):
                waiters = self._tables.setdefault(name, set())
        waiters.add(future)
        return waiters

    def _forget(self, topic: Topic, waiters: Waiters) -> None:
        """Drop an emptied set of waiters (only if it is still the one filed for ``topic``)."""
        match topic:
            case Key(key):
                if self._keys.get(key) is waiters:
                    del self._keys[key]
            case Prefix(prefix):
                if self._prefixes.get(prefix) is waiters:
                    del self._prefixes[prefix]
                    self._drop_length(len(prefix))
            case Service(name):
                if self._services.get(name) is waiters:
                    del self._services[name]
            case Table(name):
                if self._tables.get(name) is waiters:
                    del self._tables[name]
        if not (self._keys or self._prefixes):
            self._store.watching = False

    def _drop_length(self, length: int) -> None:
        self._prefix_lengths[length] -= 1
        if not self._prefix_lengths[length]:
            del self._prefix_lengths[length]

    # ------------------------------------------------------------------ changes

    def notify(self) -> None:
        """An applied batch: wake the readers of what it changed."""
        touched = self._store.take_touched()
        before, after = self._indices, self._table_indices()
        self._indices = after
        if touched.restored:
            self.release_all(None)
            return
        woken: list[Waiters] = []
        if touched.keys or touched.prefixes:
            self._keys_changed(touched.keys, touched.prefixes, woken)
        services = self._services
        if services:
            woken.extend(services.pop(name) for name in touched.names if name in services)
        tables = self._tables
        if tables:
            instances, checks, acl = (a != b for a, b in zip(before, after, strict=True))
            for name, hit in (("services", instances), ("checks", checks),
                              ("catalog", instances or checks), ("acl", acl),
                              ("applied", True)):
                if hit and name in tables:
                    woken.append(tables.pop(name))
        if not (self._keys or self._prefixes):
            self._store.watching = False
        if woken:
            _wake([f for waiters in woken for f in waiters], None)

    def _keys_changed(self, keys: list[str], prefixes: list[str], woken: list[Waiters]) -> None:
        by_key, by_prefix = self._keys, self._prefixes
        for key in keys:
            if key in by_key:
                woken.append(by_key.pop(key))
            if by_prefix:
                for length in list(self._prefix_lengths):
                    if length <= len(key) and key[:length] in by_prefix:
                        woken.append(by_prefix.pop(key[:length]))
                        self._drop_length(length)
        for gone in prefixes:  # a recursive delete: keys under it, listings over or under it
            for key in [k for k in by_key if k.startswith(gone)]:
                woken.append(by_key.pop(key))
            for prefix in [p for p in by_prefix if p.startswith(gone) or gone.startswith(p)]:
                woken.append(by_prefix.pop(prefix))
                self._drop_length(len(prefix))

    def release_all(self, outcome: object = _RELEASED) -> None:
        """Wake every parked reader; with the default outcome they return without waiting
        for their change (the app is shutting down: answer now, do not hold the shutdown)."""
        everyone: list[asyncio.Future[object]] = []
        for table in (self._keys, self._prefixes, self._services, self._tables):
            for waiters in table.values():
                everyone.extend(waiters)
            table.clear()
        self._prefix_lengths.clear()
        self._store.watching = False
        _wake(everyone, outcome)

    def _table_indices(self) -> tuple[int, int, int]:
        store = self._store
        return store.services_index, store.checks_index, store.acl_index


def _resolve(future: asyncio.Future[object], outcome: object) -> None:
    if not future.done():
        future.set_result(outcome)


def _wake(futures: list[asyncio.Future[object]], outcome: object) -> None:
    """Resolve ``futures``, ``WAKE_SLICE`` of them now and the rest one slice per loop turn."""
    for future in futures[:WAKE_SLICE]:
        _resolve(future, outcome)
    rest = futures[WAKE_SLICE:]
    if rest:
        asyncio.get_running_loop().call_soon(_wake, rest, outcome)

