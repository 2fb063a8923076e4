"""The hot path: ``GET`` and ``PUT /kv/<key>`` without a query, served past router and middlewares.

These two requests are most of a key/value store's traffic. aiohttp's router, our two
middlewares and the response-prepare signal cost about a fifth of a leader's CPU per write, for
work these requests do not need; ``FastPath`` builds the same answer directly, with the same
code (``kv.set_command``, ``kv.key_response``), the same error answers, the same metrics series
and the same ``X-Request-ID``. Everything else takes the full app: a query string, an escaped
path, ``Expect: 100-continue``, and a write to a follower (a 307 or forwarding), including one
that finds leadership gone while it proposes. An app with middlewares beyond Konsul's own gets
no fast path at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from konsul.api.crosssite import refuse_cross_site
from konsul.api.http import NODE, read_json_object, result_response
from konsul.api.kv import key_response, set_command
from konsul.api.middlewares import (
    REQUEST_ID_HEADER,
    error_middleware,
    internal_error_response,
    konsul_error_response,
    metrics_middleware,
    record_request,
    request_id,
)
from konsul.errors import KonsulError, NotLeader
from konsul.store import commands

if TYPE_CHECKING:
    from konsul.node import Node

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# The metrics label of the routes served here: the router's canonical form of /kv/{key:.+}.
ROUTE = "/kv/{key}"


class FastPath:
    """The server's request handler: the hot requests here, the rest to ``full`` (the app)."""

    @staticmethod
    def applies_to(app: web.Application) -> bool:
        """Only for an app with Konsul's own middlewares: one more (a test's, an embedder's)
        must see every request, so the full app serves them all. (The cross-site check has
        nothing to refuse here: a browser never sends a cross-site PUT, see ``crosssite``.)"""
        return set(app.middlewares) <= {metrics_middleware, error_middleware, refuse_cross_site}

    def __init__(self, app: web.Application, full: Handler) -> None:
        self._app = app
        self._node: Node = app[NODE]
        self._full = full

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        serve = self._route(request)
        if serve is None:
            return await self._full(request)
        start = time.perf_counter()
        try:
            response = await self._answer(serve, request)
        except NotLeader:
            return await self._full(request)  # it forwards or redirects (and counts) the write
        except asyncio.CancelledError:
            record_request(self._app, ROUTE, request.method, "499", start)
            raise
        record_request(self._app, ROUTE, request.method, str(response.status), start)
        response.headers[REQUEST_ID_HEADER] = request_id(request)  # type: ignore[arg-type]
        return response

    def _route(
        self, request: web.BaseRequest
    ) -> Callable[[web.BaseRequest], Awaitable[web.Response]] | None:
        raw = request.raw_path
        if len(raw) <= 4 or not raw.startswith("/kv/") or "?" in raw or "%" in raw:
            return None
        if request.method == "GET":
            return self._get
        if request.method == "PUT" and self._node.is_leader and "Expect" not in request.headers:
            return self._put
        return None

    async def _answer(
        self,
        serve: Callable[[web.BaseRequest], Awaitable[web.Response]],
        request: web.BaseRequest,
    ) -> web.Response:
        """What the error middleware would make of the handler's outcome (NotLeader passes)."""
        try:
            return await serve(request)
        except NotLeader:
            raise
        except KonsulError as exc:
            return konsul_error_response(exc)
        except Exception:
            return internal_error_response(request)  # type: ignore[arg-type]

    async def _get(self, request: web.BaseRequest) -> web.Response:
        key = commands.validate_key(request.path[4:])
        return key_response(self._node, key)

    async def _put(self, request: web.BaseRequest) -> web.Response:
        key = commands.validate_key(request.path[4:])
        body = await read_json_object(request)  # type: ignore[arg-type]
        return result_response(await self._node.propose(set_command(key, body, None)))
