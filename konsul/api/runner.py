"""An ``AppRunner`` whose protocol-level errors are JSON too, which installs the fast path,
and a ``Site`` that serves it.

aiohttp answers requests it cannot even parse (an unknown method, a malformed header, a bad
request line) before any middleware runs, with a ``text/plain`` (or, for a 500 to a browser,
HTML) body. The contract is "errors are always JSON", so the request handler that produces
those answers is swapped for one that writes our error shape. Use ``AppRunner(create_app(node))``
exactly like ``aiohttp.web.AppRunner``.

Connections cannot pin the node: one idle for ``IDLE_TIMEOUT`` (nothing sent yet, or nothing
since its last answer) is closed, one that started a request head and has not finished it
within ``HEADER_TIMEOUT`` too (a client sending a byte at a time), and ``Site`` bounds a TLS
handshake by ``HANDSHAKE_TIMEOUT``. A request being served (a blocking read) is never idle.

aiohttp has no public hook for those answers: ``Server.__call__`` builds a ``RequestHandler``
(the connection's protocol) whose ``handle_error`` writes them. So the runner re-classes the
``Server`` it makes into ``_JSONServer``, whose handlers are re-classed into
``_JSONRequestHandler`` (an empty ``__slots__`` keeps the layout, which is what allows it). This
rests on facts about aiohttp's internals, each checked by ``tests/api/test_runner.py``, so an
aiohttp release that changes one fails there, by name, rather than somewhere in production:
``AppRunner._make_server`` returns a ``Server``; ``Server.__call__`` returns a plain
``RequestHandler``; ``RequestHandler`` has slots and no ``__dict__``; ``handle_error`` takes
``(request, status, exc, message)`` and returns the response it writes; and the keep-alive
state ``data_received`` adjusts for the header timeout (below) is where it was.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from konsul.api import fastpath
from konsul.api.errors import HTTP_CODES
from konsul.api.middlewares import REQUEST_ID_HEADER
from konsul.tls import HANDSHAKE_TIMEOUT

IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 10.0


class _JSONRequestHandler(RequestHandler):
    __slots__ = ()  # same layout as RequestHandler, so an instance can be re-classed

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The parent logs, refuses when a response already started, and closes the connection.
        plain = super().handle_error(request, status, exc, message)
        if status == 500:
            code, text = "internal error", "The server hit an unexpected error; it has been logged."
        else:
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            code = HTTP_CODES.get(status, phrase.lower() or "error")
            first = (message or phrase or "Malformed HTTP request").strip().splitlines()[0]
            text = first.rstrip(": .") + "."
        response = web.Response(
            status=plain.status,
            body=orjson.dumps({"error": code, "message": text}),
            content_type="application/json",
        )
        response.headers[REQUEST_ID_HEADER] = uuid.uuid4().hex
        response.force_close()
        return response

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Still waiting for a complete request head after these bytes: the connection must
        # finish it within HEADER_TIMEOUT of its first byte. aiohttp's keep-alive timer closes
        # a connection that waits for a head past its deadline; pull that deadline in.
        handle = self._keepalive_handle
        if self._messages or self._request_in_progress or handle is None:
            return  # a complete head is queued, or these bytes are a request's body
        deadline = self._loop.time() + HEADER_TIMEOUT
        if deadline < self._next_keepalive_close_time:
            self._next_keepalive_close_time = deadline
            handle.cancel()
            self._keepalive_handle = self._loop.call_at(deadline, self._process_keepalive)


class _JSONServer(Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JSONRequestHandler
        return handler


class AppRunner(web.AppRunner):
    """``aiohttp.web.AppRunner`` with JSON protocol errors, handler cancellation on, and the
    hot requests served by ``FastPath`` when ``fastpath.allowed`` says the app is as
    ``create_app`` left it.

    With ``handler_cancellation`` a client that hangs up cancels its handler: a blocking read
    then stops waiting (instead of holding a waiter, re-evaluated on every apply, for up to
    10 minutes). A write whose client left still commits: the node resolves its proposal
    whether or not anyone still awaits it.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("handler_cancellation", True)
        kwargs.setdefault("keepalive_timeout", IDLE_TIMEOUT)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _JSONServer
        if fastpath.allowed(self.app):
            server.request_handler = fastpath.FastPath(self.app, server.request_handler)
        return server


class Site(web.TCPSite):
    """``aiohttp.web.TCPSite`` whose TLS handshakes must finish within ``HANDSHAKE_TIMEOUT``
    (aiohttp leaves asyncio's default of a minute)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would listen too
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=True,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
