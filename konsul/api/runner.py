"""An ``AppRunner`` whose protocol-level errors are JSON too.

aiohttp answers requests it cannot even parse (an unknown method, a malformed header, a bad
request line) before any middleware runs, with a ``text/plain`` (or, for a 500 to a browser,
HTML) body. The contract is "errors are always JSON", so the request handler that produces
those answers is swapped for one that writes our error shape. Use ``AppRunner(create_app(node))``
exactly like ``aiohttp.web.AppRunner``.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from konsul.api.fastpath import FastPath
from konsul.api.middlewares import HTTP_CODES, REQUEST_ID_HEADER


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


class _JSONServer(Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JSONRequestHandler
        return handler


class AppRunner(web.AppRunner):
    """``aiohttp.web.AppRunner`` with JSON protocol errors, handler cancellation on, and the
    hot requests served by ``FastPath``.

    With ``handler_cancellation`` a client that hangs up cancels its handler: a blocking read
    then stops waiting (instead of holding a waiter, re-evaluated on every apply, for up to
    10 minutes). A write whose client left still commits: the node resolves its proposal
    whether or not anyone still awaits it.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("handler_cancellation", True)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _JSONServer
        if FastPath.applies_to(self.app):
            server.request_handler = FastPath(self.app, server.request_handler)
        return server
