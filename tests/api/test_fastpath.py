"""``FastPath``: plain ``GET``/``PUT /kv/<key>`` answered past the router must answer exactly like
the full app. A query string (even an unused one) sends a request through the full app, which
gives each case its reference answer."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.api import create_app
from konsul.api.fastpath import ROUTE, FastPath
from konsul.errors import NotLeader
from konsul.node import Node
from konsul.raft.types import Member
from tests.api.conftest import KonsulTestServer, body_of, error_of

Client = Any

# Headers whose value differs between two answers by nature.
_VARYING = {"Date", "X-Request-ID", "X-Konsul-Index", "Content-Length"}


async def answer(
    client: Client, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, set[str]]:
    resp = await client.request(method, path, **kwargs)
    text = await resp.text()
    assert resp.headers.get("X-Request-ID"), "every answer carries X-Request-ID"
    assert resp.content_type == "application/json", text
    return resp.status, await resp.json(), set(resp.headers) - _VARYING


def without_indexes(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if not k.endswith("_index")}
    return body


@pytest.mark.parametrize(
    ("method", "key", "kwargs"),
    [
        ("PUT", "k", {"json": {"value": "v", "flags": 7}}),
        ("PUT", "k", {"data": b"{not json"}),
        ("PUT", "k", {"json": ["a list"]}),
        ("PUT", "k", {"json": {"value": "v", "colour": "red"}}),
        ("PUT", "k", {"json": {"flags": 1}}),
        ("PUT", "k", {"json": {"value": "v", "cas": 12345}}),
        ("PUT", "a/../b", {"json": {"value": "v"}}),
        ("PUT", "k", {"json": {"value": "x" * (512 * 1024 + 1)}}),
        ("GET", "k", {}),
        ("GET", "absent", {}),
        ("GET", "a/../b", {}),
    ],
    ids=["put", "bad-json", "not-object", "unknown-field", "no-value", "cas-conflict",
         "bad-key", "too-large", "get", "get-404", "get-bad-key"],
)
async def test_fast_and_full_paths_answer_alike(
    client: Client, method: str, key: str, kwargs: dict[str, Any]
) -> None:
    await body_of(await client.put("/kv/k", json={"value": "seed"}), 200)
    fast = await answer(client, method, f"/kv/{key}", **kwargs)
    full = await answer(client, method, f"/kv/{key}?via=full", **kwargs)
    assert fast[0] == full[0], (fast, full)
    assert without_indexes(fast[1]) == without_indexes(full[1])
    assert fast[2] == full[2]


async def test_plain_kv_requests_never_reach_the_app(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = client.server.runner.server.request_handler
    assert isinstance(fast, FastPath)
    reached: list[str] = []

    async def full_app(request: Any) -> Any:
        reached.append(request.raw_path)
        return await original(request)

    original = fast._full
    monkeypatch.setattr(fast, "_full", full_app)
    await body_of(await client.put("/kv/a/b", json={"value": "v"}), 200)
    await body_of(await client.get("/kv/a/b"), 200)
    await error_of(await client.get("/kv/none"), 404)
    assert reached == []
    await body_of(await client.get("/kv/a/b?consistent"), 200)
    await body_of(await client.get("/kv/a%2Fb"), 200)
    await error_of(await client.post("/kv/a/b", data=b""), 400)
    assert reached == ["/kv/a/b?consistent", "/kv/a%2Fb", "/kv/a/b"]


def requests_counted(text: str, method: str, status: str) -> float:
    prefix = f'konsul_http_requests_total{{method="{method}",route="{ROUTE}",status="{status}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


async def test_fast_answers_are_counted_in_the_routes_own_series(client: Client) -> None:
    kv_routes = {
        r.resource.canonical
        for r in client.server.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/kv/{")
    }
    assert kv_routes == {ROUTE}, "the fast path's label is the router's label for /kv/<key>"
    for i in range(3):
        await body_of(await client.put(f"/kv/m{i}", json={"value": "v"}), 200)
    await error_of(await client.get("/kv/nothing-here"), 404)
    await body_of(await client.put("/kv/m0?via=full", json={"value": "w"}), 200)
    metrics = await (await client.get("/metrics")).text()
    assert requests_counted(metrics, "PUT", "200") == 4
    assert requests_counted(metrics, "GET", "404") == 1


async def test_leadership_lost_while_proposing_goes_to_the_full_app(
    client: Client, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node led when the request arrived and no longer does when it proposes: the full app
    answers (a 307 here, forwarding when enabled), and the request is counted once."""
    leader = Member("node9", "10.0.0.9:7000", True, "10.0.0.9:8500")

    async def deposed(data: bytes) -> object:
        raise NotLeader(leader)

    monkeypatch.setattr(node, "propose", deposed)
    resp = await client.put("/kv/moved", json={"value": "v"}, allow_redirects=False)
    body = await error_of(resp, 307, "not leader")
    assert resp.headers["Location"] == "http://10.0.0.9:8500/kv/moved"
    assert body["leader_id"] == "node9"
    metrics = await (await client.get("/metrics")).text()
    assert requests_counted(metrics, "PUT", "307") == 1


async def test_a_bug_on_the_fast_path_is_a_logged_500(
    client: Client, node: Node, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    async def broken(data: bytes) -> object:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(node, "propose", broken)
    resp = await client.put("/kv/k", json={"value": "v"}, headers={"X-Request-ID": "bug-2"})
    body = await error_of(resp, 500, "internal error")
    assert body["request_id"] == "bug-2" and "secret" not in await resp.text()
    assert any(r.exc_info for r in caplog.records)
    monkeypatch.undo()
    await body_of(await client.put("/kv/k", json={"value": "v"}), 200)


async def test_expect_continue_is_left_to_the_full_app(client: Client) -> None:
    """The client sends the body only after a ``100 Continue``, which only the full app sends."""
    resp = await client.put("/kv/big", data=b'{"value": "v"}', expect100=True)
    assert (await body_of(resp, 200))["key"] == "big"
    assert (await body_of(await client.get("/kv/big"), 200))["value"] == "v"


async def test_an_app_with_a_middleware_of_its_own_gets_no_fast_path(
    node: Node, aiohttp_client: Any
) -> None:
    """A middleware added to the app (a test's follower stand-in, an embedder's auth) must see
    every request, plain key writes included."""
    seen: list[str] = []

    @web.middleware
    async def watching(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        return await handler(request)

    app = create_app(node)
    app.middlewares.append(watching)
    client = await aiohttp_client(KonsulTestServer(app))
    assert not isinstance(client.server.runner.server.request_handler, FastPath)
    await body_of(await client.put("/kv/w", json={"value": "v"}), 200)
    await body_of(await client.get("/kv/w"), 200)
    assert seen == ["PUT /kv/w", "GET /kv/w"]
