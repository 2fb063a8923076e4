"""``/v1/status/leader`` and ``/v1/status/peers``: the Raft leader and voters, as ``host:port``.

Consul shows its servers' Raft (RPC) addresses; so does Konsul. A standalone node has no Raft
address and shows its HTTP address instead. No leader known: ``""``.
"""

from __future__ import annotations

from aiohttp import web

from konsul.api.http import node_of
from konsul.api.v1.query import answer, read_options
from konsul.raft.types import Member


def _address(request: web.Request, member: Member) -> str:
    return member.address or node_of(request).settings.http_advertise_addr


async def leader(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    current = node.leader()
    data = _address(request, current) if current is not None else ""
    return answer(request, read_options(request), node.store.last_applied, data)


async def peers(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    data = [_address(request, m) for m in node.peers() if m.voter]
    return answer(request, read_options(request), node.store.last_applied, data)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/status/leader", leader)
    app.router.add_get("/status/peers", peers)
