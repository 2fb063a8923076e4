"""``KONSUL_FORWARD_WRITES=true``: a follower proxies a write to the leader instead of a 307.

Useful behind a Kubernetes Service that spreads requests over every pod. The forwarded request
carries ``X-Konsul-Forwarded`` so that a second hop (leadership moved meanwhile) answers with
the 307 itself rather than bouncing the request around the cluster.

A leader that has just died may still be the one this follower knows. If its address vanished
with it (a killed container or pod: no reset, silence), connecting would wait out the full
connect timeout and answer 503. Instead the connection gets ``CONNECT_S``; when it fails,
nothing was sent, so the write goes to the leader elected meanwhile, if one is within
``NEW_LEADER_WAIT_S`` (an election takes a fraction of that).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from konsul.api.acl import forward_headers
from konsul.api.http import IMPORT_BODY_LIMIT, node_of, read_body
from konsul.errors import OutcomeUnknown, Unavailable
from konsul.peers import TIMEOUT as PEER_TIMEOUT
from konsul.raft.runtime import TICK_SECONDS
from konsul.raft.types import Member

FORWARDED_HEADER = "X-Konsul-Forwarded"
# A client that cannot follow a 307 to another host asks for forwarding per request: the web UI
# (a browser may not follow a redirect to another origin) sends it with every write.
FORWARD_REQUEST_HEADER = "X-Konsul-Forward-Writes"
_PASS_REQUEST = ("Content-Type", "X-Request-ID")
_PASS_RESPONSE = ("Location", "Retry-After", "X-Konsul-Index")
# Members answer a connect from the kernel's backlog: well under this even on a loaded machine.
CONNECT_S = 0.3
NEW_LEADER_WAIT_S = 2.0
# A forwarded write: the leader's whole answer may take the peer timeout, its connection not.
TIMEOUT = aiohttp.ClientTimeout(
    total=PEER_TIMEOUT.total, connect=PEER_TIMEOUT.connect, sock_connect=CONNECT_S
)
# No connection to the leader: nothing was sent, so the write may go to another leader.
NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


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
    body = await read_body(request, IMPORT_BODY_LIMIT)
    headers = {name: request.headers[name] for name in _PASS_REQUEST if name in request.headers}
    headers.update(forward_headers(request))  # the same token, whichever carrier brought it
    node = node_of(request)
    headers[FORWARDED_HEADER] = node.settings.raft.node_id
    try:
        return await _send(request, leader, body, headers)
    except _NotReached as unreached:
        newer = await _another_leader(request, leader.id)
        if newer is None:
            raise unreached.error from None
    try:
        return await _send(request, newer, body, headers)
    except _NotReached as unreached:
        raise unreached.error from None


class _NotReached(Exception):
    """No connection to the leader: nothing was sent, the write may go elsewhere."""

    def __init__(self, error: Unavailable) -> None:
        self.error = error


async def _send(
    request: web.Request, leader: Member, body: bytes, headers: dict[str, str]
) -> web.Response:
    if not leader.http_address:
        raise Unavailable(f"the leader {leader.id} has no known HTTP address to forward to")
    try:
        async with node_of(request).peer_http.request(
            request.method, leader.http_address, request.raw_path, data=body, headers=headers,
            allow_redirects=False, timeout=TIMEOUT,
        ) as upstream:
            payload = await upstream.read()
            out = {k: upstream.headers[k] for k in _PASS_RESPONSE if k in upstream.headers}
            return web.Response(
                body=payload,
                status=upstream.status,
                headers=out,
                content_type=upstream.content_type or "application/json",
            )
    except NOT_CONNECTED as exc:
        why = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else None
        raise _NotReached(Unavailable(
            f"could not reach the leader {leader.id} at {leader.http_address} to forward the "
            f"write ({why or f'no connection within {CONNECT_S} s'}); nothing was written"
        )) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OutcomeUnknown(
            f"could not forward the write to the leader {leader.id} at {leader.http_address}: "
            f"{exc or type(exc).__name__}; the outcome is unknown"
        ) from None


async def _another_leader(request: web.Request, gone: str) -> Member | None:
    """The leader this node knows once it is another than ``gone`` (None after the wait)."""
    node = node_of(request)
    deadline = time.monotonic() + NEW_LEADER_WAIT_S
    while time.monotonic() < deadline:
        leader = node.leader()
        if leader is not None and leader.id != gone:
            return leader
        await asyncio.sleep(TICK_SECONDS)
    return None
