"""The leader's check runner against a real HTTP server and a real TCP port: statuses follow
what the endpoints do, and only changes are written to the log."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from konsul import config
from konsul.checks.runner import SCAN_SECONDS, CheckRunner
from konsul.metrics import Metrics
from konsul.node import Node
from konsul.peers import PeerHTTP
from konsul.raft.types import Member
from konsul.store import StateMachine, commands


class FlippingServer:
    """An HTTP endpoint whose status code the test sets, counting the probes it receives."""

    def __init__(self) -> None:
        self.status = 200
        self.hits = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(status=self.status, text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/health"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    settings = config.load({"KONSUL_DATA_DIR": str(tmp_path), "KONSUL_RAFT_NODE_ID": "n1"})
    n = Node(settings)
    await n.start()
    assert await n.runtime.wait_applied(n.is_ready, 10)
    yield n
    await n.stop()


@pytest.fixture
async def server() -> AsyncIterator[FlippingServer]:
    s = FlippingServer()
    await s.start()
    yield s
    await s.stop()


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _status(node: Node, check_id: str) -> str | None:
    check = node.store.check(check_id)
    return check.status if check else None


async def test_http_check_follows_the_endpoint_and_writes_only_changes(
    node: Node, server: FlippingServer
) -> None:
    service = {
        "id": "web1",
        "name": "web",
        "address": "127.0.0.1",
        "port": 80,
        "checks": [{"id": "web1-http", "http": server.url, "interval": "50ms", "timeout": "1s"}],
    }
    await node.propose(commands.service_register(service))
    await eventually(lambda: _status(node, "web1-http") == "passing", 5, "passing")

    # Several more probes with the same answer: not one more log entry.
    index, hits = node.core.last_index, server.hits
    await eventually(lambda: server.hits >= hits + 6, 5, "six more probes")
    assert node.core.last_index == index

    for code, expected in ((429, "warning"), (500, "critical"), (200, "passing")):
        server.status = code
        await eventually(lambda e=expected: _status(node, "web1-http") == e, 5, expected)
    # Three changes, three entries (give the runner time to write a spurious fourth).
    hits = server.hits
    await eventually(lambda: server.hits >= hits + 4, 5, "four more probes")
    assert node.core.last_index == index + 3


async def test_tcp_check_follows_a_port_that_opens_and_closes(node: Node) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    service = {
        "id": "db1",
        "name": "db",
        "checks": [{"id": "db1-tcp", "tcp": f"127.0.0.1:{port}", "interval": "50ms"}],
    }
    await node.propose(commands.service_register(service))
    await eventually(lambda: _status(node, "db1-tcp") == "passing", 5, "passing while open")
    listener.close()
    await eventually(lambda: _status(node, "db1-tcp") == "critical", 5, "critical once closed")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    try:
        await eventually(lambda: _status(node, "db1-tcp") == "passing", 5, "passing reopened")
    finally:
        listener.close()


async def test_ttl_check_expires_and_heartbeats_keep_a_service(node: Node) -> None:
    service = {"id": "job1", "name": "job", "checks": [{"id": "job1-ttl", "ttl": "300ms"}]}
    await node.propose(commands.service_register(service, ttl="400ms"))
    assert _status(node, "job1-ttl") == "critical"  # TTL checks start critical
    await node.propose(commands.check_update("job1-ttl", "passing", "alive"))
    assert _status(node, "job1-ttl") == "passing"
    await eventually(lambda: _status(node, "job1-ttl") == "critical", 5, "TTL expiry")

    # Heartbeats keep the instance registered for well past its TTL ...
    started = time.monotonic()
    while time.monotonic() - started < 1.2:
        await node.propose(commands.service_heartbeat("job1"))
        await asyncio.sleep(0.1)
    assert node.store.service("job1") is not None
    # ... and it is deregistered once they stop.
    await eventually(lambda: node.store.service("job1") is None, 5, "service TTL expiry")


async def test_deregister_critical_after_removes_the_service(node: Node) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = {
        "id": "gone-tcp",
        "tcp": f"127.0.0.1:{port}",
        "interval": "50ms",
        "deregister_critical_after": "300ms",
    }
    await node.propose(commands.service_register({"id": "gone", "name": "gone", "checks": [check]}))
    await eventually(lambda: _status(node, "gone-tcp") == "critical", 5, "critical")
    await eventually(lambda: node.store.service("gone") is None, 5, "reaped")


class FakeLeader:
    """A one-member node as the runner sees it, with no Raft and no runner of its own: a store
    that applies what is proposed at once, and leadership and readiness the test sets."""

    def __init__(self) -> None:
        self.node_id = "n1"
        self.store = StateMachine()
        self.metrics = Metrics()
        self.peer_http = PeerHTTP("http", None)
        self.is_leader = True
        self.ready = True

    def is_ready(self) -> bool:
        return self.ready

    def leader(self) -> Member | None:
        return self.peers()[0] if self.is_leader else None

    def peers(self) -> list[Member]:
        return [Member("n1", "127.0.0.1:1", True, "127.0.0.1:2")]

    def report_token(self) -> str | None:
        return ""

    async def propose(self, data: bytes) -> object:
        return self.store.apply(self.store.last_applied + 1, data)


@contextlib.asynccontextmanager
async def running(runner: CheckRunner) -> AsyncIterator[CheckRunner]:
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_leader_not_ready_for_a_moment_or_losing_leadership_keeps_its_probes(
    server: FlippingServer,
) -> None:
    # Regression (#16): every probe was cancelled and restarted whenever is_ready() was briefly
    # false, which on a leader happens between a commit and its apply. Probes now depend on
    # the members, not on who leads: losing leadership stops only the leader's timers.
    host = FakeLeader()
    check = {"id": "web1-http", "http": server.url, "interval": "200ms", "timeout": "1s"}
    await host.propose(commands.service_register({"id": "web1", "name": "web", "checks": [check],
                                                  "ttl": "1h"}))
    async with running(CheckRunner(host)) as runner:
        await eventually(lambda: server.hits >= 1, 10, "the first probe")
        pid, orders = runner.worker.pid, runner.share.set_orders
        host.ready = False
        await asyncio.sleep(SCAN_SECONDS * 4)
        host.ready = True
        hits = server.hits
        await eventually(lambda: server.hits >= hits + 3, 5, "three more probes")
        assert runner.timers.active()
        host.is_leader = False
        await eventually(lambda: not runner.timers.active(), 5, "the timers to stop")
        hits = server.hits
        await eventually(lambda: server.hits >= hits + 3, 5, "three more probes as follower")
        assert (runner.worker.pid, runner.share.set_orders) == (pid, orders)
        assert "web1-http" in runner.share.assigned


async def register_probes(host: FakeLeader, url: str, prefix: str, count: int) -> None:
    for s in range(0, count, 10):  # (at most 32 checks per instance)
        checks = [{"id": f"{prefix}{s + i}", "http": url, "interval": "2s"} for i in range(10)]
        await host.propose(commands.service_register({"id": f"{prefix}{s}", "name": "n",
                                                      "checks": checks}))


async def test_a_starting_worker_spreads_its_first_probes_and_a_new_check_runs_at_once(
    server: FlippingServer,
) -> None:
    host, count, interval = FakeLeader(), 40, 2.0
    await register_probes(host, server.url, "old", count)
    async with running(CheckRunner(host)):  # a member starting: 40 probes to start
        await eventually(lambda: server.hits >= 1, 10, "the first probe")
        await asyncio.sleep(interval / 4)
        # all at once would be 40 within the first scan; spread evenly, about 10 in a quarter
        assert server.hits <= count * 0.6, server.hits
        await eventually(lambda: server.hits >= count, interval + 2, "every check probed")
        # registered now: probed within a scan or two, not within an interval
        await host.propose(commands.service_register({"id": "new", "name": "new", "checks": [
            {"id": "new", "http": server.url, "interval": "10s"}]}))
        await eventually(lambda: (c := host.store.check("new")) is not None
                         and c.status == "passing", 1, "the new check's first probe")
