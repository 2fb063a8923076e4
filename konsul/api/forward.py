"""``KONSUL_FORWARD_WRITES=true``: a follower proxies a write to the leader instead of a 307.

Useful behind a Kubernetes Service that spreads requests over every pod. The forwarded request
carries ``X-Konsul-Forwarded`` so that a second hop (leadership moved meanwhile) answers with
the 307 itself rather than bouncing the request around the cluster.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from konsul.api.acl import forward_headers
from konsul.api.http import IMPORT_BODY_LIMIT, node_of, read_body
from konsul.errors import OutcomeUnknown, Unavailable
from konsul.raft.types import Member

FORWARDED_HEADER = "X-Konsul-Forwarded"
# A client that cannot follow a 307 to another host asks for forwarding per request: the web UI
# (a browser may not follow a redirect to another origin) sends it with every write.
FORWARD_REQUEST_HEADER = "X-Konsul-Forward-Writes"
_PASS_REQUEST = ("Content-Type", "X-Request-ID")
_PASS_RESPONSE = ("Location", "Retry-After", "X-Konsul-Index")


def wants_forwarding(request: web.Request, forward_writes: bool) -> bool:
    """Whether a write this follower cannot serve goes to the leader from here (not a 307):
    ``KONSUL_FORWARD_WRITES`` or the request's own ``X-Konsul-Forward-Writes: true``, and never
    a second hop."""
    if FORWARDED_HEADER in request.headers:
        return False
    if forward_writes:
        return True
    return request.headers.get(FORWARD_REQUEST_HEADER, "").strip().lower() == "true"


async def forward_to_leader(request: web.Request, leader: Member) -> web.Response:
    if not leader.http_address:
        raise Unavailable(f"the leader {leader.id} has no known HTTP address to forward to")
    body = await read_body(request, IMPORT_BODY_LIMIT)
    headers = {name: request.headers[name] for name in _PASS_REQUEST if name in request.headers}
    headers.update(forward_headers(request))  # the same token, whichever carrier brought it
    node = node_of(request)
    headers[FORWARDED_HEADER] = node.settings.raft.node_id
    try:
        async with node.peer_http.request(
            request.method, leader.http_address, request.raw_path, data=body, headers=headers,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out = {k: upstream.headers[k] for k in _PASS_RESPONSE if k in upstream.headers}
            return web.Response(
                body=payload,
                status=upstream.status,
                headers=out,
                content_type=upstream.content_type or "application/json",
            )
    except aiohttp.ClientConnectorError as exc:
        raise Unavailable(
            f"could not reach the leader {leader.id} at {leader.http_address} to forward the "
            f"write ({exc.os_error or exc}); nothing was written"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OutcomeUnknown(
            f"could not forward the write to the leader {leader.id} at {leader.http_address}: "
            f"{exc or type(exc).__name__}; the outcome is unknown"
        ) from None
