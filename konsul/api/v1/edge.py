"""The edge of ``/v1``: every error becomes the answer Consul gives, text with Consul's status.

Consul's HTTP layer answers errors as ``text/plain`` with the reason as the body, and Consul
clients read them that way (py-consul puts the body in its exception, the Go client returns
``Unexpected response code: 500 (No cluster leader)``). The native API keeps its JSON errors:
this middleware sits on the ``/v1`` sub-application only, inside the app's own middlewares, and
turns every exception into an answer before they could see it.

The statuses are Consul's, decided here for every Konsul error: Consul reports "no leader" and
a write whose outcome is unknown as a plain 500, so the same happens here.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.api.middlewares import request_id
from konsul.errors import (
    BadRequest,
    Conflict,
    KonsulError,
    NoLeader,
    NotFound,
    PermissionDenied,
    Timeout,
    TooLarge,
)

log = logging.getLogger("konsul.api.v1")

# Konsul's errors as Consul's statuses; anything else (no leader, an unknown outcome, a node
# that is stopping) is Consul's catch-all 500.
CONSUL_STATUS: tuple[tuple[type[KonsulError], int], ...] = (
    (BadRequest, 400),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (Timeout, 504),
)
NO_LEADER = "No cluster leader"
NOT_FOUND = "Invalid URL path: not a recognized HTTP API endpoint"


class Answered(Exception):
    """A complete answer obtained elsewhere (the leader's, for a forwarded write)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=body, status=status, headers=headers, content_type="text/plain")


def error_text(exc: KonsulError) -> web.Response:
    status = next((s for cls, s in CONSUL_STATUS if isinstance(exc, cls)), 500)
    message = NO_LEADER if isinstance(exc, NoLeader) else exc.message
    return text(message, status)


def http_error_text(request: web.Request, exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        return text(NOT_FOUND, 404)
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return text(
            f"method {request.method} not allowed", 405, {"Allow": ",".join(allowed)}
        )
    if exc.status == 413:
        return text("Request body too large", 413)
    return text(exc.text or exc.reason, exc.status)


@web.middleware
async def consul_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Answered as answered:
        return answered.response
    except KonsulError as exc:
        return error_text(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_text(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        rid = request_id(request)
        fields = {"method": request.method, "path": request.path, "request_id": rid}
        log.exception("unhandled error", extra={"fields": fields})
        return text(f"An unexpected error occurred (request id {rid})", 500)
