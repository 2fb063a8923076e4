"""The edge of ``/v1``: every error becomes the answer Consul gives, text with Consul's status.

Consul's HTTP layer answers errors as ``text/plain`` with the reason as the body, and Consul
clients read them that way (py-consul puts the body in its exception, the Go client returns
``Unexpected response code: 500 (No cluster leader)``). The native API keeps its JSON errors:
this middleware sits on the ``/v1`` sub-application only, inside the app's own middlewares, and
turns every exception into an answer before they could see it.

Konsul errors keep their status except where Consul differs: Consul reports "no leader" and a
write whose outcome is unknown as a plain 500, so the same happens here.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.api.middlewares import request_id
from konsul.errors import ClusteringDisabled, KonsulError, NoLeader, NotLeader, Unavailable

log = logging.getLogger("konsul.api.v1")

# Konsul's own errors whose status Consul spells differently (every other keeps its status).
CONSUL_STATUS: dict[type[KonsulError], int] = {
    NoLeader: 500,
    Unavailable: 500,
    ClusteringDisabled: 500,
    NotLeader: 500,  # never reaches a client: writes are forwarded (see commit.py)
}
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
    status = CONSUL_STATUS.get(type(exc), exc.status)
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
