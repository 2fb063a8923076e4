"""The Raft transport reconnects to a peer whose connection died, under uvloop as ``konsul`` runs.

Regression: uvloop raises ``RuntimeError`` (not ``OSError``) for a write on a transport that a
peer reset; the write loop let it escape, its task ended, and the node never talked to that peer
again. Seen as a restarted old leader that stayed a candidate forever after a SIGKILL failover.

Regression: a dial sent to the address a restarted peer had before (a container's old IP, where
nothing answers) held the write loop for the whole connect timeout after the peer was back. Seen
on the guide's compose deployment as a leadership handover lost again (check quorum).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import uvloop

from konsul.raft import transport as transport_module
from konsul.raft.lookup import PeerLookup
from konsul.raft.messages import AppendEntries, Message, TimeoutNow
from konsul.raft.transport import HELLO_MAGIC, TcpTransport
from tests.cluster_harness import free_subnet
from tests.processes import free_port


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


async def test_a_peer_that_reaches_us_is_dialled_back_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted member dials us as it starts: our own dial to it, failed while it was down,
    goes again then, not at the end of its backoff (here made 30 s long)."""
    monkeypatch.setattr(transport_module, "BACKOFF_MIN", 30.0)
    a, b, unreachable, to_b = _pair()
    await a.start()
    try:
        a.send([TimeoutNow(src="a", dst="b", term=1)])
        await _until(lambda: "b" in unreachable, 5)  # refused: a backs off for 30 s
        await b.start()
        b.connect("a")  # b starts and dials a, as a starting member dials its peers
        await _until(lambda: bool(to_b), 10)
        assert to_b == [TimeoutNow(src="a", dst="b", term=1)]
    finally:
        await a.stop()
        await b.stop()


async def test_a_peer_that_was_down_is_not_sent_the_appends_meant_for_it_meanwhile() -> None:
    """A leader probes a peer that is down once a heartbeat. Delivered when it came back, those
    probes told a restarted member a commit index long overtaken, and it said ready while
    hundreds of entries behind (#16). Only fresh appends reach it; a vote (or, here, a
    TimeoutNow) still waits for it, as an election is not repeated before its timeout."""
    a, b, unreachable, to_b = _pair()
    stale = AppendEntries("a", "b", 1, 5, 1, (), 5, 0)
    await a.start()
    try:
        a.send([stale, TimeoutNow(src="a", dst="b", term=1)])  # before a first dial
        await _until(lambda: "b" in unreachable, 5)
        a.send([stale])  # and while a backs off
        await b.start()
        b.connect("a")
        await _until(lambda: bool(to_b), 10)  # a is connected to b now
        fresh = AppendEntries("a", "b", 1, 9, 1, (), 9, 0)
        a.send([fresh])
        await _until(lambda: len(to_b) >= 2, 10)
        assert to_b == [TimeoutNow(src="a", dst="b", term=1), fresh]
    finally:
        await a.stop()
        await b.stop()


def test_a_dial_to_the_address_a_peer_left_starts_over_when_the_peer_reaches_us(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member restarted in a container comes back at another address, under the same name. Our
    dial made while it was away went to its old address, where SYNs go unanswered; when the
    member reaches us, that dial starts over with a fresh lookup instead of waiting out its
    connect timeout (here made 30 s long)."""
    monkeypatch.setattr(transport_module, "CONNECT_TIMEOUT", 30.0)
    prefix = free_subnet()
    looked_up: list[str] = []
    with _unanswering_address(f"{prefix}.1") as (old, port):
        new = f"{prefix}.2"
        names = {"b.konsul.test": old}  # what the network's DNS says of b (a fake resolver)

        def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
            looked_up.append(names[host])
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]

        monkeypatch.setattr(transport_module, "PeerLookup", partial(PeerLookup, resolver=resolver))
        uvloop.run(_dialled_back_at_new_address(
            names, looked_up, f"b.konsul.test:{port}", f"{new}:{port}"
        ))
    assert looked_up == [old, new]


async def _dialled_back_at_new_address(
    names: dict[str, str], looked_up: list[str], b_name: str, b_addr: str
) -> None:
    a_addr = f"127.0.0.1:{free_port()}"
    unreachable: list[str] = []
    to_b: list[Message] = []
    a = TcpTransport("a", a_addr, a_addr, resolve=lambda _: b_name,
                     on_unreachable=unreachable.append)
    b = TcpTransport("b", b_addr, b_addr, resolve=lambda _: a_addr, deliver=to_b.append)
    await a.start()
    try:
        a.send([TimeoutNow(src="a", dst="b", term=1)])  # a dials b at its old address
        await _until(lambda: bool(looked_up), 5)
        names["b.konsul.test"] = b_addr.rsplit(":", 1)[0]  # b is back, at another address
        await b.start()
        b.connect("a")  # b dials a as it starts
        await _until(lambda: bool(to_b), 10)
        assert to_b == [TimeoutNow(src="a", dst="b", term=1)]
        assert not unreachable  # (the first dial was not refused, it was abandoned)
    finally:
        await a.stop()
        await b.stop()


def _pair() -> tuple[TcpTransport, TcpTransport, list[str], list[Message]]:
    """Transports ``a`` and ``b`` on free loopback ports (neither started), what ``a`` found
    unreachable, and what ``b`` received."""
    a_addr, b_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    unreachable: list[str] = []
    to_b: list[Message] = []
    a = TcpTransport("a", a_addr, a_addr, resolve=lambda _: b_addr,
                     on_unreachable=unreachable.append)
    b = TcpTransport("b", b_addr, b_addr, resolve=lambda _: a_addr, deliver=to_b.append)
    return a, b, unreachable, to_b


@contextmanager
def _unanswering_address(host: str) -> Iterator[tuple[str, int]]:
    """(host, port) where a connection attempt is neither accepted nor refused, as at an address
    nobody holds: a listener whose accept queue is full drops every SYN."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex((host, port))
            fillers.append(filler)
        with pytest.raises(TimeoutError):  # the premise: no answer, no refusal
            socket.create_connection((host, port), timeout=0.2).close()
        yield host, port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)

