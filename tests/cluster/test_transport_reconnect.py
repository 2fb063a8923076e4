"""The Raft transport reconnects to a peer whose connection died, under uvloop as ``konsul`` runs.

Regression: uvloop raises ``RuntimeError`` (not ``OSError``) for a write on a transport that a
peer reset; the write loop let it escape, its task ended, and the node never talked to that peer
again. Seen as a restarted old leader that stayed a candidate forever after a SIGKILL failover.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import uvloop

from konsul.raft.messages import AppendEntries
from konsul.raft.transport import HELLO_MAGIC, TcpTransport
from tests.cluster_harness import free_subnet


async def _reconnects_after_reset(host: str) -> int:
    accepted = 0
    reconnected = asyncio.Event()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readexactly(len(HELLO_MAGIC))
        if accepted >= 2:
            reconnected.set()
            return
        # Reset the first connection (SO_LINGER 0 sends an RST), as a SIGKILLed peer's kernel does.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(peer, host, 7000)
    transport = TcpTransport(
        "a", f"{host}:7001", f"{host}:7001",
        resolve=lambda _: f"{host}:7000", deliver=lambda _: None, on_unreachable=lambda _: None,
    )
    try:
        # Keep sending, as a leader's heartbeats do, until the peer sees a second connection.
        async def heartbeats() -> None:
            while True:
                transport.send([AppendEntries("a", "b", 1, 0, 0, (), 0, 0)])
                await asyncio.sleep(0.01)

        beating = asyncio.create_task(heartbeats())
        try:
            await asyncio.wait_for(reconnected.wait(), 5)
        finally:
            beating.cancel()
    finally:
        await transport.stop()
        server.close()
    return accepted


def test_write_loop_reconnects_after_the_peer_resets_the_connection() -> None:
    host = f"{free_subnet()}.1"
    assert uvloop.run(_reconnects_after_reset(host)) >= 2
