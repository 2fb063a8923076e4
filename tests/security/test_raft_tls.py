"""Mutual TLS on the Raft transport, transport against transport in one process.

A member with a certificate from our CA is heard; a plain TCP client, a certificate from another
CA, a self-signed one, an expired one or none at all is refused during the handshake: nothing it
sends reaches the decoder (the receiving side delivers no message), and every refusal is counted
with its reason. A dialer checks that the peer's certificate names the host it dialled.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from konsul import config, pki
from konsul.metrics import Metrics
from konsul.raft.messages import Message, TimeoutNow, encode
from konsul.raft.transport import HEADER, TcpTransport, _hello_frame
from konsul.tls import Tls
from tests.certs import CertDir
from tests.processes import free_port


@dataclass
class Member:
    node_id: str
    address: str
    tls: Tls
    metrics: Metrics
    transport: TcpTransport
    delivered: list[Message] = field(default_factory=list)

    def refused(self, direction: str = "inbound") -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metrics.tls_refused.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["direction"] == direction:
                    out[sample.labels["reason"]] = sample.value
        return out


def settings(cert: Path, key: Path, ca: Path) -> config.TlsSettings:
    return config.TlsSettings(str(cert), str(key), str(ca))


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


@pytest.fixture
def certs(tmp_path: Path) -> CertDir:
    return CertDir(tmp_path / "tls")


@pytest.fixture
async def pair(certs: CertDir) -> AsyncIterator[tuple[Member, Member]]:
    addresses = {"a": f"127.0.0.1:{free_port()}", "b": f"127.0.0.1:{free_port()}"}
    members: list[Member] = []
    for name, address in addresses.items():
        metrics = Metrics()
        tls = Tls(settings(*certs.member(name, ["127.0.0.1"]), certs.ca_file), metrics)
        delivered: list[Message] = []
        transport = TcpTransport(
            name, address, address, resolve=lambda n: addresses.get(n),
            deliver=delivered.append, on_unreachable=lambda n: None, tls=tls,
            handshake_timeout=0.5,
        )
        await transport.start()
        members.append(Member(name, address, tls, metrics, transport, delivered))
    yield members[0], members[1]
    for member in members:
        await member.transport.stop()


def frames(src: str, dst: str) -> bytes:
    """A hello and a valid message: what a member sends first on a new connection."""
    payload = encode(TimeoutNow(src=src, dst=dst, term=99))
    return _hello_frame(src, "127.0.0.1:1") + HEADER.pack(len(payload)) + payload


async def send_as(member: Member, context: ssl.SSLContext | None) -> bytes:
    """Dial ``member`` (over TLS when given a context), send a hello and a TimeoutNow for term
    99, and return what comes back before the connection ends."""
    host, port = member.address.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(
            host, int(port), ssl=context, server_hostname=host if context else None
        )
        writer.write(frames("mallory", member.node_id))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data
    except (OSError, ssl.SSLError):
        return b""


async def test_members_with_certificates_from_the_ca_talk(pair: tuple[Member, Member]) -> None:
    a, b = pair
    a.transport.send([TimeoutNow(src="a", dst="b", term=1)])
    b.transport.send([TimeoutNow(src="b", dst="a", term=2)])
    await wait_for(lambda: b.delivered and a.delivered)
    assert b.delivered == [TimeoutNow(src="a", dst="b", term=1)]
    assert a.delivered == [TimeoutNow(src="b", dst="a", term=2)]
    assert a.refused() == {} and b.refused() == {}


def client_context(cert: Path | None, key: Path | None, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_peers_without_a_valid_certificate_are_refused_before_any_frame(
    pair: tuple[Member, Member], certs: CertDir
) -> None:
    _, b = pair
    other_ca = pki.new_ca("another CA")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    self_signed = pki.new_ca("127.0.0.1")
    rogues = {
        "other CA": certs.member("other", ["127.0.0.1"], issuer=other_ca),
        "expired": certs.member(
            "expired", ["127.0.0.1"], start=past, validity=datetime.timedelta(days=1)
        ),
        "self-signed": certs.write("selfsigned", self_signed),
        "no certificate": (None, None),
    }
    for what, (cert, key) in rogues.items():
        await send_as(b, client_context(cert, key, certs.ca_file))
        assert b.delivered == [], f"a frame from a peer with {what} was delivered"
    assert await send_as(b, None) == b""  # plain TCP: not even a TLS alert to read
    await wait_for(lambda: sum(b.refused().values()) == 5)
    assert b.refused() == {"certificate": 4.0, "not_tls": 1.0}
    assert b.delivered == []


async def test_random_bytes_and_silent_connections_are_refused_and_counted(
    pair: tuple[Member, Member],
) -> None:
    a, b = pair
    host, port = b.address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as silent:
        for _ in range(3):
            with socket.create_connection((host, int(port))) as noise:
                noise.sendall(os.urandom(4096))
        await wait_for(lambda: b.refused().get("timeout", 0) == 1, timeout=3)
        silent.settimeout(1)
        assert silent.recv(1) == b""  # closed by the handshake timeout
    assert sum(v for k, v in b.refused().items() if k != "timeout") == 3
    # The members still talk to each other.
    a.transport.send([TimeoutNow(src="a", dst="b", term=5)])
    await wait_for(lambda: b.delivered)


async def test_the_dialer_checks_that_the_certificate_names_the_host_it_dialled(
    certs: CertDir,
) -> None:
    metrics = Metrics()
    tls = Tls(settings(*certs.member("a", ["127.0.0.1"]), certs.ca_file), metrics)
    # b's certificate is valid (same CA) but names another host than the one a dials.
    b_metrics = Metrics()
    b_tls = Tls(settings(*certs.member("b", ["node-b.example"]), certs.ca_file), b_metrics)
    a_addr, b_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    delivered: list[Message] = []
    b = TcpTransport("b", b_addr, b_addr, lambda n: None, delivered.append, lambda n: None,
                     tls=b_tls)
    a = TcpTransport("a", a_addr, a_addr, lambda n: b_addr, lambda m: None, lambda n: None,
                     tls=tls)
    await a.start()
    await b.start()
    try:
        a.send([TimeoutNow(src="a", dst="b", term=1)])
        member = Member("a", a_addr, tls, metrics, a)
        await wait_for(lambda: member.refused("outbound").get("certificate", 0) >= 1)
        assert delivered == []
    finally:
        await a.stop()
        await b.stop()
