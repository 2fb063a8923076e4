"""Cross-cutting behaviour: JSON errors everywhere, request ids, redirects and write forwarding.

The follower cases (307, 503 no leader, forwarding) use the real app on a real standalone node
with one extra route whose handler raises what ``node.propose`` raises on a follower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.api import create_app
from konsul.errors import NoLeader, NotLeader
from konsul.node import Node
from konsul.raft.types import Member
from tests.api.conftest import body_of, error_of, settings_for, wait_until

Client = Any


async def test_request_id_is_echoed_or_generated(client: Client) -> None:
    resp = await client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert resp.headers["X-Request-ID"] == "trace-123"
    resp = await client.get("/kv/none", headers={"X-Request-ID": "trace-404"})
    assert resp.status == 404 and resp.headers["X-Request-ID"] == "trace-404"
    first = (await client.get("/health")).headers["X-Request-ID"]
    second = (await client.get("/health")).headers["X-Request-ID"]
    assert first and second and first != second
    # An absurd id is replaced rather than echoed.
    resp = await client.get("/health", headers={"X-Request-ID": "x" * 1000})
    assert resp.headers["X-Request-ID"] != "x" * 1000


async def test_unknown_route_and_wrong_method_are_json(client: Client) -> None:
    body = await error_of(await client.get("/no/such/thing"), 404, "not found")
    assert "/no/such/thing" in body["message"]
    resp = await client.patch("/kv/k", json={"value": "v"})
    await error_of(resp, 405, "method not allowed")
    assert "PUT" in resp.headers["Allow"]
    await error_of(await client.delete("/services"), 405, "method not allowed")
    resp = await client.head("/no/such/thing")
    assert resp.status == 404


def faulty_app(node: Node, handler: Any) -> web.Application:
    app = create_app(node)
    app.router.add_route("*", "/test/fault", handler)
    return app


async def test_unexpected_exception_is_a_500_json_without_traceback(
    node: Node, aiohttp_client: Any, caplog: Any
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    client = await aiohttp_client(faulty_app(node, broken))
    resp = await client.get("/test/fault", headers={"X-Request-ID": "bug-1"})
    body = await error_of(resp, 500, "internal error")
    assert "secret internals" not in await resp.text()
    assert body["request_id"] == "bug-1"
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    # The app keeps serving.
    await body_of(await client.get("/health"), 200)


async def test_not_leader_is_a_307_with_location_and_leader_fields(
    node: Node, aiohttp_client: Any
) -> None:
    leader = Member("node9", "10.0.0.9:7000", True, "10.0.0.9:8500")

    async def follower_write(request: web.Request) -> web.Response:
        raise NotLeader(leader)

    client = await aiohttp_client(faulty_app(node, follower_write))
    resp = await client.put("/test/fault?cas=3&x=a%20b", json={"value": "v"},
                            allow_redirects=False)
    body = await error_of(resp, 307, "not leader")
    assert resp.headers["Location"] == "http://10.0.0.9:8500/test/fault?cas=3&x=a%20b"
    assert body == {
        "error": "not leader",
        "message": "This node is not the leader. Redirect to leader for write operations.",
        "leader_addr": "10.0.0.9:7000",
        "leader_id": "node9",
        "leader_http_addr": "10.0.0.9:8500",
    }


async def test_no_leader_is_a_503_with_retry_after(node: Node, aiohttp_client: Any) -> None:
    async def leaderless(request: web.Request) -> web.Response:
        raise NoLeader()

    client = await aiohttp_client(faulty_app(node, leaderless))
    resp = await client.post("/test/fault", json={})
    await error_of(resp, 503, "no leader")
    assert resp.headers["Retry-After"] == "1"


async def test_forward_writes_proxies_to_the_leader(
    client: Client, tmp_path: Path, aiohttp_client: Any
) -> None:
    """A follower with KONSUL_FORWARD_WRITES=true answers with the leader's own answer."""
    leader_http = f"{client.server.host}:{client.server.port}"
    leader = Member("leader", "127.0.0.1:7000", True, leader_http)
    follower = Node(settings_for(tmp_path / "follower", KONSUL_FORWARD_WRITES="true"))
    await follower.start()
    try:
        await wait_until(follower.is_ready)
        app = create_app(follower)

        async def follower_put(request: web.Request) -> web.Response:
            raise NotLeader(leader)

        # The follower's routes for this test: whatever arrives is "not for me".
        app.router.add_route("*", "/kv-follower/{tail:.*}", follower_put)
        front = await aiohttp_client(app)
        # The leader sees the original path: route it the same way there.
        resp = await front.put("/kv-follower/x", json={"value": "v"},
                               headers={"X-Request-ID": "fwd-1"})
        # The leader has no /kv-follower route: its JSON 404 comes back through the proxy.
        body = await error_of(resp, 404, "not found")
        assert "/kv-follower/x" in body["message"]
        assert resp.headers["X-Request-ID"] == "fwd-1"
    finally:
        await follower.stop()


@pytest.mark.parametrize(
    ("env", "headers"),
    [
        ({"KONSUL_FORWARD_WRITES": "true"}, {}),
        # Per request, what the setting does per node (the web UI asks for it on every write).
        ({}, {"X-Konsul-Forward-Writes": "true"}),
    ],
    ids=["setting", "header"],
)
async def test_forwarded_write_lands_on_the_leader(
    client: Client,
    tmp_path: Path,
    aiohttp_client: Any,
    env: dict[str, str],
    headers: dict[str, str],
) -> None:
    leader_http = f"{client.server.host}:{client.server.port}"
    leader = Member("leader", "127.0.0.1:7000", True, leader_http)
    follower = Node(settings_for(tmp_path / "follower", **env))
    await follower.start()
    try:
        await wait_until(follower.is_ready)

        @web.middleware
        async def as_follower(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "GET":
                raise NotLeader(leader)
            return await handler(request)

        app = create_app(follower)
        app.middlewares.append(as_follower)
        front = await aiohttp_client(app)
        if headers:  # without the header, the default answer: a redirect
            resp = await front.put("/kv/fwd?cas=0", json={"value": "via"}, allow_redirects=False)
            assert resp.status == 307
        written = await body_of(
            await front.put("/kv/fwd?cas=0", json={"value": "via"}, headers=headers), 200
        )
        assert written["key"] == "fwd"
        assert (await body_of(await client.get("/kv/fwd"), 200))["value"] == "via"
        await error_of(await front.get("/kv/fwd"), 404)  # the follower's own replica
        again = await front.put("/kv/fwd?cas=0", json={"value": "again"}, headers=headers)
        await error_of(again, 409)
    finally:
        await follower.stop()


async def test_forwarding_to_an_unreachable_leader_is_503(
    tmp_path: Path, aiohttp_client: Any, unused_tcp_port: int
) -> None:
    leader = Member("gone", "127.0.0.1:7000", True, f"127.0.0.1:{unused_tcp_port}")
    follower = Node(settings_for(tmp_path / "f", KONSUL_FORWARD_WRITES="true"))
    await follower.start()
    try:
        await wait_until(follower.is_ready)

        async def follower_put(request: web.Request) -> web.Response:
            raise NotLeader(leader)

        front = await aiohttp_client(faulty_app(follower, follower_put))
        resp = await front.put("/test/fault", json={"value": "v"})
        await error_of(resp, 503, "unavailable")
        assert resp.headers["Retry-After"] == "1"
    finally:
        await follower.stop()
