"""The fast path is safe by construction: it answers exactly as the full app does, and anything
added to the app after ``create_app`` either turns it off or (a guard) runs on it too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.api import create_app, fastpath
from konsul.api.fastpath import FastPath
from konsul.errors import BadRequest
from konsul.node import Node
from tests.api.conftest import KonsulTestServer, body_of, error_of, settings_for, wait_until

Client = Any
BIG = "x" * (512 * 1024 + 1)

# Every shape of request the fast path serves (plain GET/PUT /kv/<key>), in order, with what
# it answers: successes, each kind of refusal, a CAS conflict and the keys' 404.
SHAPES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/kv/k", {}),
    ("PUT", "/kv/k", {"json": {"value": "v", "flags": 7}}),
    ("GET", "/kv/k", {}),
    ("PUT", "/kv/k", {"json": {"value": "w", "cas": 1}}),
    ("PUT", "/kv/k", {"json": {"value": "w", "cas": 12345}}),
    ("PUT", "/kv/new", {"json": {"value": "n", "cas": 0}}),
    ("PUT", "/kv/k", {"data": b"{not json"}),
    ("PUT", "/kv/k", {"data": b""}),
    ("PUT", "/kv/k", {"json": ["a list"]}),
    ("PUT", "/kv/k", {"json": {"value": "v", "colour": "red"}}),
    ("PUT", "/kv/k", {"json": {"flags": 1}}),
    ("PUT", "/kv/k", {"json": {"value": 1}}),
    ("PUT", "/kv/k", {"json": {"value": "v", "flags": -1}}),
    ("PUT", "/kv/k", {"json": {"value": BIG}}),
    ("PUT", "/kv/a/../b", {"json": {"value": "v"}}),
    ("GET", "/kv/a/../b", {}),
    ("PUT", "/kv/dir/é", {"json": {"value": "\u2603"}}),
    ("GET", "/kv/dir/é", {}),
    ("PUT", "/kv/chunked", {"data": "chunked"}),  # see sent()
    ("GET", "/kv/chunked", {}),
    ("GET", "/kv/absent", {}),
    # A write marked as a browser's cross-site request: the guard refuses it on both paths.
    ("PUT", "/kv/k", {"json": {"value": "x"}, "headers": {"Sec-Fetch-Site": "cross-site"}}),
    ("PUT", "/kv/k", {"json": {"value": "x"}, "headers": {"Origin": "http://evil.example"}}),
]


def sent(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request's arguments; a chunked body (no Content-Length) is made fresh each time."""
    if kwargs.get("data") != "chunked":
        return {k: v for k, v in kwargs.items() if k != "headers"}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"value":'
        yield b' "c"}'

    return {"data": chunks()}


def passthrough() -> Any:
    @web.middleware
    async def passing(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    return passing


async def complete(resp: Any) -> tuple[int, str, list[tuple[str, str]], bytes]:
    body = await resp.read()
    headers = sorted((k, v) for k, v in resp.headers.items() if k != "Date")
    return resp.status, resp.reason, headers, body


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[Node]:
    """A second node, for the full app to replay the same history on."""
    other = Node(settings_for(tmp_path / "reference"))
    await other.start()
    await wait_until(other.is_ready)
    yield other
    await other.stop()


async def test_both_paths_give_complete_identical_answers(
    client: Client, reference: Node, aiohttp_client: Any
) -> None:
    app = create_app(reference)
    app.middlewares.append(passthrough())  # turns the fast path off
    full = await aiohttp_client(KonsulTestServer(app))
    assert isinstance(client.server.runner.server.request_handler, FastPath)
    assert not isinstance(full.server.runner.server.request_handler, FastPath)
    for i, (method, path, kwargs) in enumerate(SHAPES):
        headers = {"X-Request-ID": f"shape-{i}", **kwargs.get("headers", {})}
        fast_answer = await complete(
            await client.request(method, path, headers=headers, **sent(kwargs))
        )
        full_answer = await complete(
            await full.request(method, path, headers=headers, **sent(kwargs))
        )
        assert fast_answer == full_answer, (method, path)


async def test_a_response_hook_added_after_create_app_turns_the_fast_path_off(
    node: Node, aiohttp_client: Any
) -> None:
    seen: list[str] = []

    async def cors(request: web.Request, response: web.StreamResponse) -> None:
        seen.append(request.path)
        response.headers["Access-Control-Allow-Origin"] = "*"

    app = create_app(node)
    app.on_response_prepare.append(cors)
    client = await aiohttp_client(KonsulTestServer(app))
    assert not isinstance(client.server.runner.server.request_handler, FastPath)
    resp = await client.put("/kv/h", json={"value": "v"})
    await body_of(resp, 200)
    assert resp.headers["Access-Control-Allow-Origin"] == "*" and seen == ["/kv/h"]


async def test_a_route_added_after_create_app_turns_the_fast_path_off(
    node: Node, aiohttp_client: Any
) -> None:
    async def special(request: web.Request) -> web.Response:
        return web.json_response({"special": True})

    app = create_app(node)
    app.router.add_get("/kv/special/{rest:.*}", special)
    assert not fastpath.allowed(app)
    client = await aiohttp_client(KonsulTestServer(app))
    assert not isinstance(client.server.runner.server.request_handler, FastPath)


async def test_an_app_not_made_by_create_app_gets_no_fast_path() -> None:
    assert not fastpath.allowed(web.Application())


class Forbidden(BadRequest):
    pass


async def test_a_guard_runs_on_both_paths_and_keeps_the_fast_path(
    node: Node, aiohttp_client: Any
) -> None:
    checked: list[str] = []

    async def token_check(request: web.BaseRequest) -> None:
        checked.append(request.raw_path)
        if request.headers.get("X-Token") != "secret":
            raise Forbidden("A valid X-Token is required.")

    app = create_app(node)
    fastpath.add_guard(app, token_check)
    assert fastpath.allowed(app)
    client = await aiohttp_client(KonsulTestServer(app))
    assert isinstance(client.server.runner.server.request_handler, FastPath)
    refusals = []
    for path in ("/kv/g", "/kv/g?via=full"):
        resp = await client.put(path, json={"value": "v"}, headers={"X-Request-ID": "guard"})
        await error_of(resp, 400, "bad request")
        refusals.append(await complete(resp))
    assert refusals[0] == refusals[1]
    assert checked == ["/kv/g", "/kv/g?via=full"]
    ok = {"X-Token": "secret"}
    await body_of(await client.put("/kv/g", json={"value": "v"}, headers=ok), 200)
    await body_of(await client.get("/kv/g", headers=ok), 200)
    await error_of(await client.get("/services", headers={}), 400, "bad request")
    assert checked[-3:] == ["/kv/g", "/kv/g", "/services"]


async def test_acls_on_turn_the_fast_path_off(tmp_path: Path) -> None:
    """The ACL guard is a middleware the fast path does not run: with ACLs on, every request
    goes through it in the full app."""
    secured = Node(settings_for(tmp_path / "acl", KONSUL_ACL_ENABLED="true"))
    assert not fastpath.allowed(create_app(secured))
    assert fastpath.allowed(create_app(Node(settings_for(tmp_path / "open"))))
