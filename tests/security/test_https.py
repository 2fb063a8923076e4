"""The HTTP API over TLS: HTTPS only, client certificates, the fast path, certificate reload, and
connections that try to pin the node (idle, a head sent a byte at a time, a handshake that
never finishes)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from konsul import config, pki
from konsul import node as node_module
from konsul.api import AppRunner, Site, create_app
from konsul.api import runner as runner_module
from konsul.api.fastpath import FastPath
from konsul.client import AsyncClient, Call, Client, NotLeaderError, Result, _Plan, _State
from konsul.node import Node
from konsul.tls import TlsError
from tests.api.conftest import settings_for, wait_until
from tests.certs import CertDir


@dataclass
class Served:
    node: Node
    runner: AppRunner
    port: int
    certs: CertDir

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def call(
        self, method: str, path: str, context: ssl.SSLContext | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        ctx = context or self.certs.client_context()
        async with aiohttp.ClientSession() as session, session.request(
            method, self.url + path, ssl=ctx, **kwargs
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def serve(tmp_path: Path, **env: str) -> Served:
    certs = CertDir(tmp_path / "tls")
    tls_env = certs.member_env("node", ["127.0.0.1", "localhost"])
    node = Node(settings_for(tmp_path / "data", **tls_env, **env))
    await node.start()
    await wait_until(node.is_ready)
    assert node.tls is not None
    runner = AppRunner(create_app(node), keepalive_timeout=0.5)
    await runner.setup()
    site = Site(runner, "127.0.0.1", 0, ssl_context=node.tls.http_server, handshake_timeout=0.5)
    await site.start()
    return Served(node, runner, site.port, certs)


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setattr(node_module, "TLS_RELOAD_INTERVAL", 0.05)
    monkeypatch.setattr(runner_module, "HEADER_TIMEOUT", 0.3)
    s = await serve(tmp_path)
    yield s
    await s.runner.cleanup()
    await s.node.stop()


async def test_the_api_serves_https_only_and_the_fast_path_still_serves_kv(
    served: Served,
) -> None:
    assert isinstance(served.runner.server.request_handler, FastPath)  # type: ignore[union-attr]
    code, body = await served.call("PUT", "/kv/greeting", json={"value": "hello"})
    assert code == 200, body
    code, body = await served.call("GET", "/kv/greeting")
    assert (code, body["value"]) == (200, "hello")
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{served.port}/kv/greeting")
    other = CertDir(served.certs.root / "other")  # a CA the client trusts, not the server's
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await served.call("GET", "/health", other.client_context())


async def test_verify_incoming_requires_a_client_certificate_from_the_ca(
    tmp_path: Path,
) -> None:
    s = await serve(tmp_path, KONSUL_TLS_VERIFY_INCOMING="true")
    try:
        s.certs.member("app", ["app.example"])
        code, _ = await s.call("GET", "/health", s.certs.client_context("app"))
        assert code == 200
        s.certs.member("rogue", ["app.example"], issuer=pki.new_ca("rogue CA"))
        for context in (s.certs.client_context(), s.certs.client_context("rogue")):
            with pytest.raises(aiohttp.ClientError):
                await s.call("GET", "/health", context)
    finally:
        await s.runner.cleanup()
        await s.node.stop()


def _served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(
        raw, server_hostname="127.0.0.1"
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


async def test_a_renewed_certificate_is_served_without_a_restart(served: Served) -> None:
    ca = served.certs.ca_file
    before = await asyncio.to_thread(_served_serial, served.port, ca)
    async with aiohttp.ClientSession() as session:  # a connection opened before the renewal
        context = served.certs.client_context()
        await session.put(served.url + "/kv/a", json={"value": "1"}, ssl=context)
        served.certs.member("node", ["127.0.0.1", "localhost"])
        await wait_until(lambda: served.node.metrics.tls_reloads.labels("ok")._value.get() == 1)
        after = await asyncio.to_thread(_served_serial, served.port, ca)
        assert after != before
        resp = await session.get(served.url + "/kv/a", ssl=context)
        assert resp.status == 200
    # A half-written update (a key that does not match) is refused; the certificate stays.
    (served.certs.root / "node.key").write_bytes(pki.issue(served.certs.ca, "x").key_pem)
    await wait_until(
        lambda: served.node.metrics.tls_reloads.labels("failed")._value.get() == 1
    )
    assert await asyncio.to_thread(_served_serial, served.port, ca) == after


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        return False


async def test_connections_that_send_nothing_or_trickle_a_head_are_closed(
    served: Served,
) -> None:
    context = served.certs.client_context()
    # Connected over TLS, never a request: closed after the idle timeout (0.5 s here).
    idle_r, _idle_w = await asyncio.open_connection(
        "127.0.0.1", served.port, ssl=context, server_hostname="127.0.0.1"
    )
    # A request head, a few bytes and then nothing more: closed after the header timeout.
    slow_r, slow_w = await asyncio.open_connection(
        "127.0.0.1", served.port, ssl=context, server_hostname="127.0.0.1"
    )
    slow_w.write(b"GET /kv/a HTTP/1.1\r\nHost: x\r\n")
    # TCP only, no TLS handshake at all: dropped after the handshake timeout.
    raw_r, _raw_w = await asyncio.open_connection("127.0.0.1", served.port)
    assert await _closed_within(slow_r, 0.45)  # header timeout 0.3 s: before idle 0.5 s
    assert await _closed_within(raw_r, 1.0)
    assert await _closed_within(idle_r, 1.0)
    code, _ = await served.call("GET", "/health")  # the node serves on
    assert code == 200


def test_unusable_tls_settings_are_refused_at_start(tmp_path: Path) -> None:
    certs = CertDir(tmp_path / "tls")
    env = certs.member_env("node", ["127.0.0.1"])
    with pytest.raises(config.ConfigError, match="KONSUL_TLS_KEY_FILE"):
        config.load({**env, "KONSUL_TLS_KEY_FILE": ""})
    with pytest.raises(config.ConfigError, match="KONSUL_TLS_CA_FILE"):
        config.load({**env, "KONSUL_TLS_CA_FILE": "", "KONSUL_TLS_VERIFY_INCOMING": "true"})
    with pytest.raises(config.ConfigError, match="KONSUL_TLS_CA_FILE"):
        config.load({**env, "KONSUL_TLS_CA_FILE": "", "KONSUL_RAFT_ENABLED": "true",
                     "KONSUL_RAFT_NODE_ID": "n1", "KONSUL_RAFT_ADVERTISE_ADDR": "127.0.0.1:7000"})
    with pytest.raises(config.ConfigError, match="KONSUL_TLS_VERIFY_INCOMING"):
        config.load({**env, "KONSUL_TLS_VERIFY_INCOMING": "maybe"})
    (tmp_path / "tls" / "node.key").write_text("not a key")
    with pytest.raises(TlsError, match=r"node\.crt"):
        Node(settings_for(tmp_path / "data", **env))


async def test_the_client_presents_its_certificate_and_never_downgrades_a_redirect(
    tmp_path: Path,
) -> None:
    s = await serve(tmp_path, KONSUL_TLS_VERIFY_INCOMING="true")
    try:
        cert, key = s.certs.member("app", ["app.example"])
        ca = str(s.certs.ca_file)

        def use_it() -> str:
            with Client([s.url], ca_file=ca, client_cert=str(cert), client_key=str(key)) as c:
                c.kv_put("k", "v")
                return str(c.kv_get("k")["value"])

        assert await asyncio.to_thread(use_it) == "v"
        async with AsyncClient([s.url], ca_file=ca, client_cert=str(cert),
                               client_key=str(key)) as ac:
            assert (await ac.kv_get("k"))["value"] == "v"
    finally:
        await s.runner.cleanup()
        await s.node.stop()
    state = _State(["https://10.0.0.1:8500"], 3, 1.0)
    moved = Result(307, {"error": "not leader"}, {"location": "http://10.0.0.2:8500/kv/k"})
    with pytest.raises(NotLeaderError, match="plain HTTP"):
        _Plan(state, Call("PUT", "/kv/k")).answered("https://10.0.0.1:8500", moved)
