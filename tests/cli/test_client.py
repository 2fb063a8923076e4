"""The Python client (sync and async) against a real ``konsul`` process, and its failover logic
(307 following, 503 retries, unreachable nodes) against real follower-like servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    KonsulConnectionError,
    NotFound,
    TooLarge,
    Unavailable,
    resolve_addresses,
)
from konsul.errors import NoLeader, NotLeader
from konsul.raft.types import Member
from tests.api.server import ThreadedServer
from tests.cli.conftest import KonsulProcess, free_port


@pytest.fixture
def client(konsul: KonsulProcess) -> Iterator[Client]:
    with Client(konsul.address) as c:
        yield c


def test_addresses_from_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_addresses("a:1, http://b:2/ ,a:1") == ["http://a:1", "http://b:2"]
    monkeypatch.setenv("KONSUL_HTTP_ADDR", "c:3,d:4")
    assert Client().addresses == ["http://c:3", "http://d:4"]
    monkeypatch.delenv("KONSUL_HTTP_ADDR")
    assert Client().addresses == ["http://127.0.0.1:8500"]
    with pytest.raises(ValueError):
        resolve_addresses("ftp://x:1")


def test_kv_and_txn(client: Client) -> None:
    written = client.kv_put("cl/a", "1", flags=3)
    assert written["key"] == "cl/a"
    entry = client.kv_get("cl/a", consistent=True)
    assert (entry["value"], entry["flags"]) == ("1", 3)
    assert client.last_index == written["modify_index"]
    assert client.last_known_leader is True and client.last_contact_ms == 0
    client.kv_put("cl/b", "2", cas=0)
    with pytest.raises(Conflict) as conflict:
        client.kv_put("cl/b", "x", cas=0)
    assert conflict.value.status == 409 and conflict.value.code == "conflict"
    assert [e["key"] for e in client.kv_list("cl/")] == ["cl/a", "cl/b"]
    assert client.kv_list("cl/", keys=True) == ["cl/a", "cl/b"]
    result = client.txn([{"verb": "get", "key": "cl/a"}, {"verb": "set", "key": "cl/c",
                                                         "value": "3"}])
    assert result["results"][0]["value"] == "1"
    with pytest.raises(Conflict) as failed:
        client.txn([{"verb": "check-index", "key": "cl/a", "index": 1}])
    assert failed.value.errors[0]["op_index"] == 0
    with pytest.raises(NotFound):
        client.kv_get("cl/none")
    with pytest.raises(BadRequest):
        client.kv_put("/abs", "v")
    with pytest.raises(TooLarge):
        client.kv_put("cl/big", "x" * (512 * 1024 + 1))
    assert client.kv_delete("cl/", recurse=True) == {"deleted": 3}


def test_blocking_read(client: Client) -> None:
    first = client.kv_put("cl/watch", "1")
    started = time.monotonic()
    entry = client.kv_get("cl/watch", index=first["modify_index"], wait="300ms")
    assert entry["value"] == "1" and time.monotonic() - started >= 0.29

    def later() -> None:
        time.sleep(0.2)
        with Client(client.addresses) as other:
            other.kv_put("cl/watch", "2")

    writer = threading.Thread(target=later)
    writer.start()
    entry = client.kv_get("cl/watch", index=first["modify_index"], wait="30s")
    writer.join()
    assert entry["value"] == "2"


def test_services_health_cluster_data(client: Client) -> None:
    client.register({"name": "cl-svc", "id": "cl-svc-1", "tags": ["a"],
                     "checks": [{"id": "cl-ttl", "ttl": "1m"}]})
    assert [s["id"] for s in client.services(tags=["a"])] == ["cl-svc-1"]
    assert [s["id"] for s in client.service("cl-svc")] == ["cl-svc-1"]
    assert client.update_check("cl-ttl", "passing", "fine")["status"] == "passing"
    assert [c["id"] for c in client.health_service("cl-svc")] == ["cl-ttl"]
    assert "cl-ttl" in [c["id"] for c in client.health_checks()]
    assert client.services(name="cl-svc", passing=True)[0]["status"] == "passing"
    client.heartbeat("cl-svc-1")
    document = client.export()
    client.deregister("cl-svc-1")
    with pytest.raises(NotFound):
        client.service("cl-svc")
    assert client.import_data(document)["services"] >= 1
    assert client.service("cl-svc")[0]["id"] == "cl-svc-1"
    client.deregister("cl-svc-1")

    assert client.health()["status"] == "healthy"
    assert client.health_live()["status"] == "alive"
    assert client.health_ready()["status"] == "ready"
    status = client.cluster_status()
    assert client.cluster_leader()["leader_id"] == status["node_id"]
    assert client.cluster_peers()["peers"][0]["id"] == status["node_id"]
    assert client.cluster_snapshot()["index"] >= 1
    with pytest.raises(Unavailable) as disabled:
        client.cluster_join("n2", "127.0.0.2:7000")
    assert disabled.value.code == "clustering not enabled"
    with pytest.raises(Unavailable):
        client.cluster_leave("n2")
    with pytest.raises(Unavailable):
        client.transfer_leadership()
    with pytest.raises(Unavailable):
        client.bootstrap()
    assert "konsul_raft_is_leader 1.0" in client.metrics()


async def test_async_client(konsul: KonsulProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with AsyncClient([dead, konsul.address]) as client:
        written = await client.kv_put("acl/a", "1")
        assert (await client.kv_get("acl/a"))["value"] == "1"
        assert client.last_index == written["modify_index"]
        assert [e["key"] for e in await client.kv_list("acl/")] == ["acl/a"]
        with pytest.raises(NotFound):
            await client.kv_get("acl/none")
        with pytest.raises(Conflict):
            await client.kv_put("acl/a", "2", cas=0)
        await client.register({"name": "acl-svc"})
        assert [s["id"] for s in await client.services(name="acl-svc")] == ["acl-svc"]
        await client.deregister("acl-svc")
        assert (await client.cluster_status())["state"] == "Leader"
        assert (await client.kv_delete("acl/a")) == {"deleted": 1}


# ---------------------------------------------------------------- failover behaviour


class Counter:
    def __init__(self) -> None:
        self.writes = 0


def follower_of(leader_http: str, counter: Counter) -> Any:
    leader = Member("leader", "10.9.9.9:7000", True, leader_http)

    @web.middleware
    async def as_follower(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET":
            counter.writes += 1
            raise NotLeader(leader)
        return await handler(request)

    return as_follower


def test_follows_a_307_and_remembers_the_leader(konsul: KonsulProcess, tmp_path: Path) -> None:
    counter = Counter()
    follower = ThreadedServer(tmp_path / "f", [follower_of(konsul.address, counter)]).start()
    try:
        with Client(follower.address) as client:
            client.kv_put("cl/redirected", "r")
            assert counter.writes == 1
            assert f"http://{konsul.address}" in client.addresses
            client.kv_put("cl/redirected", "again")
            assert counter.writes == 1, "once learned, writes go straight to the leader"
            with Client(konsul.address) as direct:
                assert direct.kv_get("cl/redirected")["value"] == "again"
    finally:
        follower.stop()


def test_retries_no_leader_then_gives_up(tmp_path: Path) -> None:
    failures = {"left": 2}

    @web.middleware
    async def electing(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET" and failures["left"] > 0:
            failures["left"] -= 1
            raise NoLeader()
        return await handler(request)

    server = ThreadedServer(tmp_path / "n", [electing]).start()
    try:
        with Client(server.address) as client:
            assert client.kv_put("cl/retry", "ok")["key"] == "cl/retry"
            assert failures["left"] == 0
        failures["left"] = 100
        with Client(server.address, retries=1) as client, pytest.raises(Unavailable) as err:
            client.kv_put("cl/retry", "never")
        assert err.value.code == "no leader"
        assert failures["left"] == 98, "one try and one retry"
    finally:
        server.stop()


class SilentServer:
    """Accepts a connection, reads the request, and hangs up without an answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.seen += 1

    def close(self) -> None:
        self.sock.close()


def test_a_write_whose_connection_breaks_is_not_retried(konsul: KonsulProcess) -> None:
    silent = SilentServer()
    try:
        with Client([silent.address, konsul.address]) as client:
            with pytest.raises(KonsulConnectionError, match="outcome is unknown"):
                client.kv_put("cl/ambiguous", "v")
            assert silent.seen == 1
        # A read is safe to retry elsewhere.
        with Client([silent.address, konsul.address]) as client:
            with pytest.raises(NotFound):
                client.kv_get("cl/ambiguous")
            assert silent.seen == 2
    finally:
        silent.close()


def test_no_reachable_node(tmp_path: Path) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with (
        Client(dead, retries=1) as client,
        pytest.raises(KonsulConnectionError, match="no Konsul node reachable"),
    ):
        client.kv_get("x")


def test_a_307_to_a_dead_leader_waits_for_the_election(tmp_path: Path) -> None:
    """Right after a leader dies, followers still name it for up to an election timeout. The
    client must wait for the new leader (here: the follower itself, 0.4 s later), not bounce
    between the follower and the dead address until its redirects run out."""
    dead = Member("old", "10.9.9.9:7000", True, f"127.0.0.1:{free_port()}")
    elected_at = time.monotonic() + 0.4
    redirected = Counter()

    @web.middleware
    async def until_elected(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET" and time.monotonic() < elected_at:
            redirected.writes += 1
            raise NotLeader(dead)
        return await handler(request)

    server = ThreadedServer(tmp_path / "n", [until_elected]).start()
    try:
        with Client(server.address) as client:
            assert client.kv_put("cl/after-election", "ok")["key"] == "cl/after-election"
            assert time.monotonic() >= elected_at
            assert 1 <= redirected.writes <= 10, redirected.writes
            assert client.kv_get("cl/after-election")["value"] == "ok"
    finally:
        server.stop()


def test_kv_watch_yields_each_change(client: Client, konsul: KonsulProcess) -> None:
    seen: list[Any] = []
    watcher = Client(konsul.address)

    def watch() -> None:
        for entry in watcher.kv_watch("cl/watched", wait="10s"):
            seen.append(None if entry is None else entry["value"])
            if len(seen) == 4:
                return

    thread = threading.Thread(target=watch)
    thread.start()
    deadline = time.monotonic() + 10

    def wait_for(n: int) -> None:
        while len(seen) < n:
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)

    wait_for(1)
    client.kv_put("cl/watched", "one")
    wait_for(2)
    client.kv_put("cl/unrelated", "noise")  # wakes nothing the watcher reports
    client.kv_put("cl/watched", "two")
    wait_for(3)
    client.kv_delete("cl/watched")
    thread.join(10)
    watcher.close()
    assert seen == [None, "one", "two", None]
