"""Name lookups of peer addresses that a stalled resolver cannot turn into a stalled cluster.

A member's advertise address is often a name (``konsul1:7000`` in the guide's compose file, a
pod's DNS name in Kubernetes), and the name of a member that died may take the resolver many
seconds to give up on. asyncio's ``getaddrinfo`` runs in a small shared thread pool (four
threads under uvloop) and cannot be cancelled: a dial abandoned after ``CONNECT_TIMEOUT`` leaves
its lookup running, the write loop dials again, and within seconds every thread is busy looking
up the dead peer. Every other lookup in the process then waits behind them, among them the
lookup of a live peer that must get our vote now.

So each peer has its own lookups, in daemon threads of their own: a dead peer's stalled lookups
delay no other peer, and a process stopping does not wait for them. A dial that times out leaves
its lookup running, and the next dial waits for the same answer.

A lookup unanswered for longer than our ``patience`` is most likely lost rather than slow: a
container network's DNS server (podman's aardvark-dns) drops the queries that reach it while it
reloads for a container that (re)started, and glibc asks again only after its 5 s timeout,
while a live resolver answers a local name in milliseconds. Another lookup then starts beside
it, and another every ``patience`` while none answers (up to ``MAX_IN_FLIGHT`` unanswered at a
time: the queries of a whole reload may be lost), and the first answer of any is taken.
(Seen on the guide's compose deployment: a member restarted, and a survivor's lookup of its
name, sent during that reload, held every dial to it for 5 s; leadership handed to that
survivor meanwhile could not reach a majority and was lost again.)

Every dial after an answer looks the name up afresh: a member restarted elsewhere is found at
its new address. And once the member has reached us (it is up, its name registered again),
``ask_again`` has the next dial start a lookup at once beside those still unanswered, which were
sent while it was away, rather than wait out our patience for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

DEFAULT_PATIENCE = 0.5  # seconds before another lookup starts beside an unanswered one
MAX_IN_FLIGHT = 8  # unanswered lookups of one name at a time (each holds a thread)

Resolver = Callable[..., list[tuple[Any, ...]]]  # socket.getaddrinfo's shape


class PeerLookup:
    """The answer awaited for one peer's host name, and the lookups that may give it."""

    def __init__(
        self,
        host: str,
        port: int,
        patience: float = DEFAULT_PATIENCE,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.host = host
        self.port = port
        self._patience = patience
        self._resolver = resolver
        self._answer: asyncio.Future[str] | None = None
        self._newest = 0.0  # loop time at which the newest lookup for that answer started
        self._unanswered = 0  # lookup threads still running

    async def address(self) -> str:
        """The host's address now (an IP given as such needs no lookup). Cancelling the caller
        leaves the lookups running for the next call; a failed lookup raises ``OSError``."""
        if _is_ip(self.host):
            return self.host
        loop = asyncio.get_running_loop()
        if self._answer is None or self._answer.done():
            self._answer = loop.create_future()
            # Read the outcome even when nobody waits for it any more (a stopped transport).
            self._answer.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._look_up(self._answer)
        answer = self._answer
        while not answer.done() and self._unanswered < MAX_IN_FLIGHT:
            left = self._newest + self._patience - loop.time()
            if left <= 0:
                self._look_up(answer)  # that one is lost, most likely: ask again beside it
            else:
                await asyncio.wait({answer}, timeout=left)  # (leaves the answer uncancelled)
        return await asyncio.shield(answer)

    def ask_again(self) -> None:
        """The host is up now: the next ``address()`` starts another lookup at once if none
        has answered, instead of after our patience."""
        self._newest = float("-inf")

    def _look_up(self, answer: asyncio.Future[str]) -> None:
        """Start one lookup in a thread of its own; whichever lookup answers first settles
        ``answer``."""
        loop = asyncio.get_running_loop()
        self._newest = loop.time()
        self._unanswered += 1

        def settle(address: str | None, error: OSError | None) -> None:
            self._unanswered -= 1
            if answer.done():
                return
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(str(address))

        def look_up() -> None:
            try:
                infos = self._resolver(self.host, self.port, type=socket.SOCK_STREAM)
                result: tuple[str | None, OSError | None] = (str(infos[0][4][0]), None)
            except OSError as exc:
                result = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed while we looked
                loop.call_soon_threadsafe(settle, *result)

        threading.Thread(target=look_up, name=f"lookup-{self.host}", daemon=True).start()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
