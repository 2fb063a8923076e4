"""A peer's name lookups (konsul.raft.lookup): a lookup the resolver lost holds our dials only
for our patience, and a resolver that never answers holds a bounded number of threads.

Seen on the guide's compose deployment: a member restarted, and a survivor's lookup of its name,
sent while the network's DNS server reloaded for the new container, went unanswered until
glibc's 5 s timeout. Every dial of the survivor waited for that one lookup; when the leader
handed over meanwhile, the new leader could not reach a majority, stepped down (check quorum),
and the cluster had no leader for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import pytest

from konsul.raft.lookup import MAX_IN_FLIGHT, PeerLookup


class Resolver:
    """A resolver whose first ``stalled`` lookups hang until released (lost queries); the
    others answer at once."""

    def __init__(self, stalled: int) -> None:
        self.stalled = stalled
        self.calls = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        with self.lock:
            self.calls += 1
            stall = self.calls <= self.stalled
        if stall:
            self.release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.7", port))]


async def test_a_lost_lookup_holds_dials_only_for_its_patience() -> None:
    resolver = Resolver(stalled=1)
    lookup = PeerLookup("konsul1", 7000, patience=0.1, resolver=resolver)
    try:
        # The first dial gives up while its lookup hangs; the next one, within our patience,
        # waits for that same lookup instead of starting another.
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(lookup.address(), 0.03)
        assert resolver.calls == 1
        await asyncio.sleep(0.1)
        # Past it, the lookup is presumed lost: another one answers at once.
        started = time.monotonic()
        assert await asyncio.wait_for(lookup.address(), 1.0) == "127.0.0.7"
        assert time.monotonic() - started < 0.5
        assert resolver.calls == 2
    finally:
        resolver.release.set()


async def test_one_dial_asks_again_once_its_lookup_outlives_our_patience() -> None:
    resolver = Resolver(stalled=1)
    lookup = PeerLookup("konsul1", 7000, patience=0.1, resolver=resolver)
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(lookup.address(), 2.0) == "127.0.0.7"
        assert 0.1 <= time.monotonic() - started < 1.0
        assert resolver.calls == 2
    finally:
        resolver.release.set()


async def test_a_host_that_reached_us_is_asked_for_again_at_once() -> None:
    """A peer that reaches us is up: the dial that starts over then looks its name up again at
    once, beside the lookup sent while it was away, not after our patience (here 30 s)."""
    resolver = Resolver(stalled=1)
    lookup = PeerLookup("konsul1", 7000, patience=30, resolver=resolver)
    try:
        with pytest.raises(TimeoutError):  # a dial abandoned while its lookup hangs
            await asyncio.wait_for(lookup.address(), 0.03)
        lookup.ask_again()
        assert await asyncio.wait_for(lookup.address(), 5) == "127.0.0.7"
        assert resolver.calls == 2
    finally:
        resolver.release.set()


async def test_a_resolver_that_never_answers_holds_a_bounded_number_of_threads() -> None:
    resolver = Resolver(stalled=100)
    lookup = PeerLookup("gone", 7000, patience=0.01, resolver=resolver)
    try:
        for _ in range(3 * MAX_IN_FLIGHT):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lookup.address(), 0.02)
        assert resolver.calls == MAX_IN_FLIGHT
    finally:
        resolver.release.set()
