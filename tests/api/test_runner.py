"""The facts about aiohttp's internals that ``konsul.api.runner`` relies on (see its module
docstring). An aiohttp release that changes one fails here, by name."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from konsul.api import AppRunner, create_app
from konsul.api.runner import _JSONRequestHandler, _JSONServer
from konsul.node import Node


async def test_make_server_returns_a_server_and_is_re_classed(node: Node) -> None:
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)
    runner = AppRunner(create_app(node))
    await runner.setup()
    try:
        assert type(runner.server) is _JSONServer
        assert isinstance(runner.server, Server)
        handler = runner.server()
        assert type(handler) is _JSONRequestHandler
    finally:
        await runner.cleanup()


async def plain_handler() -> RequestHandler:
    async def nothing(request: Any) -> web.Response:
        return web.Response()

    return Server(nothing, loop=asyncio.get_running_loop())()


async def test_server_call_builds_a_plain_request_handler() -> None:
    assert type(await plain_handler()) is RequestHandler


async def test_request_handler_has_slots_so_an_empty_slotted_subclass_shares_its_layout(
) -> None:
    handler = await plain_handler()
    assert not hasattr(handler, "__dict__")
    assert _JSONRequestHandler.__slots__ == ()
    assert _JSONRequestHandler.__basicsize__ == RequestHandler.__basicsize__
    handler.__class__ = _JSONRequestHandler  # what _JSONServer does; a layout change raises


def test_handle_error_takes_request_status_exc_message() -> None:
    params = list(inspect.signature(RequestHandler.handle_error).parameters)
    assert params == ["self", "request", "status", "exc", "message"]
    assert list(inspect.signature(_JSONRequestHandler.handle_error).parameters) == params


def test_the_keep_alive_state_the_header_timeout_adjusts_is_still_there() -> None:
    """``_JSONRequestHandler.data_received`` pulls aiohttp's keep-alive deadline in."""
    for name in ("_keepalive_handle", "_next_keepalive_close_time", "_messages",
                 "_request_in_progress"):
        assert name in RequestHandler.__slots__, name
    assert list(inspect.signature(RequestHandler._process_keepalive).parameters) == ["self"]
    assert callable(RequestHandler.data_received)


async def test_an_unparseable_request_gets_our_json_answer(node: Node) -> None:
    runner = AppRunner(create_app(node))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await runner.cleanup()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ")
    assert b"Content-Type: application/json" in head
    assert body == b'{"error":"bad request","message":"Invalid header token."}'
