"""Cross-cutting concerns: metrics (outermost), then errors; the request id is added to every
response by an ``on_response_prepare`` hook (and computed once, lazily, per request).

The error middleware is where exceptions become HTTP answers (through the table of
``konsul.api.errors``), so every answer (our own errors, aiohttp's 404/405, and real bugs) is
JSON of the documented shape.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.api.errors import error_response, http_error_response, not_leader_response
from konsul.api.forward import forward_to_leader, wants_forwarding
from konsul.api.http import NODE, json_response, node_of
from konsul.errors import KonsulError, NotLeader
from konsul.metrics import Latencies, Tally

log = logging.getLogger("konsul.api")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = web.RequestKey("konsul.request_id", str)
_MAX_REQUEST_ID = 200
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Generated ids: a random per-process prefix and a counter. Unique across nodes and restarts for
# all practical purposes, and far cheaper than a uuid4 per request on the hot path.
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def request_id(request: web.Request) -> str:
    """This request's id: the caller's ``X-Request-ID`` if it sent a sane one, else a fresh one."""
    rid: str | None = request.get(_REQUEST_ID)
    if rid is None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        ok = 0 < len(sent) <= _MAX_REQUEST_ID and sent.isprintable() and sent.isascii()
        rid = sent if ok else f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
        request[_REQUEST_ID] = rid
    return rid


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: runs for every response, whatever produced it."""
    response.headers[REQUEST_ID_HEADER] = request_id(request)


def _route_label(request: web.Request) -> str:
    # The route *pattern*, never the raw path: one series per endpoint, not one per key.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = "499"  # the client went away before we answered (nginx's convention)
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    finally:
        record_request(request.app, _route_label(request), request.method, status, start)


def record_request(
    app: web.Application, route: str, method: str, status: str, start: float
) -> None:
    """Count one answered request and observe its latency (``start``: ``perf_counter()``)."""
    count, latency = _series(app, route, method if method in _KNOWN_METHODS else "OTHER", status)
    count.inc()
    latency.observe(time.perf_counter() - start)


# Per app: (route, method, status) -> (its counter series, its histogram series): one lookup
# per request for both.
_SERIES = web.AppKey("konsul.http_series", dict)


def _series(
    app: web.Application, route: str, method: str, status: str
) -> tuple[Tally, Latencies]:
    cache: dict[tuple[str, str, str], tuple[Tally, Latencies]] = app[_SERIES]
    key = (route, method, status)
    found = cache.get(key)
    if found is None:
        metrics = app[NODE].metrics
        found = (
            metrics.http_requests.labels(route, method, status),
            metrics.http_request_duration.labels(route, method),
        )
        cache[key] = found
    return found


def init_metrics_cache(app: web.Application) -> None:
    app[_SERIES] = {}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotLeader as exc:
        node = node_of(request)
        if wants_forwarding(request, node.settings.forward_writes):
            try:
                return await forward_to_leader(request, exc.leader)
            except KonsulError as failed:
                return error_response(failed)
        return not_leader_response(request, exc)
    except KonsulError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        return internal_error_response(request)


def internal_error_response(request: web.Request) -> web.Response:
    """A bug: log it with the request's id, answer 500 with that id (call inside ``except``)."""
    log.exception("unhandled error", extra={"fields": _fields(request)})
    return json_response(
        {
            "error": "internal error",
            "message": "The server hit an unexpected error; it has been logged.",
            "request_id": request_id(request),
        },
        status=500,
    )


def _fields(request: web.Request) -> dict[str, Any]:
    return {"method": request.method, "path": request.path, "request_id": request_id(request)}
