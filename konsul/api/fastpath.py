"""The hot path: ``GET`` and ``PUT /kv/<key>`` without a query, served past router and middlewares.

These two requests are most of a key/value store's traffic. aiohttp's router, our two
middlewares and the response-prepare signal cost about a fifth of a leader's CPU per write, for
work these requests do not need; ``FastPath`` builds the same answer directly, with the same
code (``kv.set_command``, ``kv.key_response``), the same error answers, the same metrics series
and the same ``X-Request-ID``. Everything else takes the full app: a query string, an escaped
path, ``Expect: 100-continue``, and a write to a follower (a 307 or forwarding), including one
that finds leadership gone while it proposes.

Safe by construction: ``FastPath`` reproduces exactly two middlewares (metrics, errors) and one
response hook (the request id): ``REPRODUCED``. ``AppRunner`` installs it only when ``allowed``:
the app holds those and nothing else, bar its guards (below), and the routes ``record`` noted at
the end of ``create_app``. Any other middleware or hook, wherever it was added (an
authentication middleware, an embedder's CORS hook, a test's stand-in), and any route added after
``create_app``, turns the fast path off for every request, so nothing is ever skipped silently.
With ACLs on, their guard is such a middleware: the fast path is then off.

A check that every request must pass and that should keep the fast path is added with
``add_guard(app, guard)`` instead: the guard becomes the innermost middleware of the full app
*and* ``FastPath`` awaits it before it serves a request. A guard refuses by raising a
``KonsulError``, answered alike on both paths. The cross-site refusal is one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler as AppHandler

from konsul.api.errors import error_response
from konsul.api.http import NODE, read_json_object
from konsul.api.kv import key_response, set_command
from konsul.api.middlewares import (
    REQUEST_ID_HEADER,
    add_request_id,
    error_middleware,
    internal_error_response,
    metrics_middleware,
    record_request,
    request_id,
)
from konsul.api.writes import result_response
from konsul.errors import KonsulError, NotLeader
from konsul.store import commands

if TYPE_CHECKING:
    from konsul.node import Node

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
Guard = Callable[[web.BaseRequest], Awaitable[None]]
# The metrics label of the routes served here: the router's canonical form of /kv/{key:.+}.
ROUTE = "/kv/{key}"


# What FastPath does itself for the requests it serves.
REPRODUCED = (metrics_middleware, error_middleware), (add_request_id,)

ROUTES = web.AppKey("konsul.fast_path_routes", tuple)
GUARDS = web.AppKey("konsul.fast_path_guards", list)  # [(guard, its middleware), ...]


def record(app: web.Application) -> None:
    """Note the routes ``create_app`` registered: call it last there."""
    app[ROUTES] = tuple(app.router.resources())


def allowed(app: web.Application) -> bool:
    """Whether the fast path may serve this app's plain /kv requests (see the module doc)."""
    middlewares, hooks = REPRODUCED
    guards = app.get(GUARDS, [])
    return (
        app.get(ROUTES) == tuple(app.router.resources())
        and tuple(app.middlewares) == (*middlewares, *(wrapped for _, wrapped in guards))
        and tuple(app.on_response_prepare) == hooks
    )


def add_guard(app: web.Application, guard: Guard) -> None:
    """Run ``guard`` before every request on both paths: as the innermost middleware of the
    full app (so the error middleware answers its refusals) and in ``FastPath``."""

    @web.middleware
    async def guarded(request: web.Request, handler: AppHandler) -> web.StreamResponse:
        await guard(request)
        return await handler(request)

    app.middlewares.append(guarded)
    if GUARDS not in app:
        app[GUARDS] = []
    app[GUARDS].append((guard, guarded))


class FastPath:
    """The server's request handler: the hot requests here, the rest to ``full`` (the app)."""

    def __init__(self, app: web.Application, full: Handler) -> None:
        self._app = app
        self._node: Node = app[NODE]
        self._full = full
        self._guards = tuple(guard for guard, _ in app.get(GUARDS, []))

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
            for guard in self._guards:
                await guard(request)
            return await serve(request)
        except NotLeader:
            raise
        except KonsulError as exc:
            return error_response(exc)
        except Exception:
            return internal_error_response(request)  # type: ignore[arg-type]

    async def _get(self, request: web.BaseRequest) -> web.Response:
        key = commands.validate_key(request.path[4:])
        return key_response(self._node, key)

    async def _put(self, request: web.BaseRequest) -> web.Response:
        key = commands.validate_key(request.path[4:])
        body = await read_json_object(request)  # type: ignore[arg-type]
        return result_response(await self._node.propose(set_command(key, body, None)))
