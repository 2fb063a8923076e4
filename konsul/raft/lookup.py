"""Name lookups of peer addresses that a stalled resolver cannot turn into a stalled cluster.

A member's advertise address is often a name (``konsul1:7000`` in the guide's compose file, a
pod's DNS name in Kubernetes), and the name of a member that died may take the resolver many
seconds to give up on. asyncio's ``getaddrinfo`` runs in a small shared thread pool (four
threads under uvloop) and cannot be cancelled: a dial abandoned after ``CONNECT_TIMEOUT`` leaves
its lookup running, the write loop dials again, and within seconds every thread is busy looking
up the dead peer. Every other lookup in the process then waits behind them, among them the
lookup of a live peer that must get our vote now.

So each peer has its own lookup, at most one at a time, in a daemon thread of its own: a dial
that times out keeps the lookup running and the next dial waits for that same lookup instead of
starting another. A dead peer's stalled lookups occupy one thread and delay nothing else, and a
process stopping does not wait for them. Every dial after a finished lookup looks the name up
afresh: a member restarted elsewhere is found at its new address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading


class PeerLookup:
    """The one lookup in flight for one peer's host name, if any."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._pending: asyncio.Future[str] | None = None

    async def address(self) -> str:
        """The host's address now (an IP given as such needs no lookup). Cancelling the caller
        leaves the lookup running for the next call; a failed lookup raises ``OSError``."""
        if _is_ip(self.host):
            return self.host
        if self._pending is None or self._pending.done():
            self._pending = self._start()
        return await asyncio.shield(self._pending)

    def _start(self) -> asyncio.Future[str]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        # Read the outcome even when nobody waits for it any more (a stopped transport).
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(address: str | None, error: OSError | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(str(address))

        def look_up() -> None:
            try:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                result: tuple[str | None, OSError | None] = (str(infos[0][4][0]), None)
            except OSError as exc:
                result = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed while we looked
                loop.call_soon_threadsafe(settle, *result)

        threading.Thread(target=look_up, name=f"lookup-{self.host}", daemon=True).start()
        return future


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
