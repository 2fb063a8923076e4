"""Writes through ``/v1``: committed on the leader, whichever member the client asked.

Consul clients send writes to any agent and never follow a redirect, so a follower does not
answer 307 here: it forwards the request (body, query and token headers) to the leader and
relays the leader's answer once its own replica holds the write (a client reads its own writes
from the member it wrote to, as from its Consul agent). While no leader is known (an election,
a leadership transfer) the write waits for one for a few seconds, as a Consul agent holds an
RPC, and only then fails.

What a client can be told:

- the state machine's result: the write happened (or was refused, e.g. a CAS miss);
- ``500 No cluster leader``: none appeared in time; nothing was written;
- ``500`` with the reason when the outcome is unknown (leadership lost with the write in flight,
  or the connection to the leader broke after the request was sent): never a silent success.

A forwarded request carries ``X-Konsul-Forwarded``. A member that receives one while it is not
the leader (leadership moved meanwhile) does not forward it again: it answers
``X-Konsul-Not-Leader``, nothing written, and the member that forwarded it tries again with
the new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from konsul.api import forward
from konsul.api.forward import FORWARDED_HEADER
from konsul.api.http import IMPORT_BODY_LIMIT, node_of, read_body
from konsul.api.v1.edge import Answered, text
from konsul.errors import KonsulError, NoLeader, NotLeader, Unavailable
from konsul.raft.types import Member

if TYPE_CHECKING:
    from konsul.node import Node

HOLD_SECONDS = 7.0  # how long a write waits for a leader (Consul's RPC hold timeout)
RETRY_SECONDS = 0.05
NOT_LEADER_HEADER = "X-Konsul-Not-Leader"
# What the leader needs besides the body: the caller's tokens, its address, the request id.
_PASS_REQUEST = ("Content-Type", "X-Request-ID", "X-Consul-Token", "Authorization",
                 "X-Konsul-Token")
_PASS_RESPONSE = ("Content-Type", "Retry-After")


class _NothingWritten(Exception):
    """The forwarded write did not happen (the leader moved, or could not be reached)."""


async def commit(request: web.Request, command: bytes) -> object:
    """The state machine's result for ``command``, applied through the leader. When the leader
    is another member, its complete answer is raised as ``Answered`` (the edge returns it)."""
    node = node_of(request)
    deadline = time.monotonic() + HOLD_SECONDS
    while True:
        try:
            return await node.propose(command)
        except NotLeader as exc:
            if FORWARDED_HEADER in request.headers:
                raise Answered(text("not the leader; nothing was written", 503,
                                    {NOT_LEADER_HEADER: "true", "Retry-After": "1"})) from None
            try:
                answer = await _forward(request, exc.leader)
            except _NothingWritten:
                pass
            else:
                await _catch_up(node)
                raise Answered(answer) from None
        except NoLeader:
            pass
        if time.monotonic() >= deadline:
            raise NoLeader()
        await asyncio.sleep(RETRY_SECONDS)


async def _catch_up(node: Node) -> None:
    """Before relaying the leader's answer, apply what it committed: a client that wrote through
    this member then reads it here (an agent endpoint, a stale read) sees its own write, as it
    would on its Consul agent. Without a leader now, the answer goes as it is."""
    with contextlib.suppress(KonsulError):
        await node.read_barrier()


def client_address(request: web.Request) -> str:
    """The caller's IP: the first ``X-Forwarded-For`` hop when a proxy (or the member that
    forwarded the write) names one, as Consul does, else the connection's peer."""
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    return forwarded or request.remote or ""


async def _forward(request: web.Request, leader: Member) -> web.Response:
    if not leader.http_address:
        raise _NothingWritten()
    headers = {name: request.headers[name] for name in _PASS_REQUEST if name in request.headers}
    headers[FORWARDED_HEADER] = node_of(request).node_id
    headers["X-Forwarded-For"] = client_address(request)
    body = await read_body(request, IMPORT_BODY_LIMIT)
    node = node_of(request)
    try:
        async with node.peer_http.request(
            request.method, leader.http_address, request.raw_path, data=body, headers=headers,
            allow_redirects=False, timeout=forward.TIMEOUT,
        ) as upstream:
            payload = await upstream.read()
            if NOT_LEADER_HEADER in upstream.headers:
                raise _NothingWritten()
            out = {k: upstream.headers[k] for k in _PASS_RESPONSE if k in upstream.headers}
            return web.Response(body=payload, status=upstream.status, headers=out)
    except forward.NOT_CONNECTED:  # a leader gone silent is given up after forward.CONNECT_S
        raise _NothingWritten() from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(
            f"The write was sent to the leader {leader.id} at {leader.http_address} but its "
            f"answer was lost ({exc or type(exc).__name__}); the outcome is unknown."
        ) from None
