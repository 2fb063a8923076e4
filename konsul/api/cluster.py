"""``/cluster/*``: Raft status, leader, peers, and membership operations.

Membership operations run on the leader (a follower answers 307, like any write); a standalone
node answers 503 ``clustering not enabled`` for all but ``/cluster/snapshot``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from konsul.api import backup
from konsul.api.http import json_response, node_of, read_json_object, read_response
from konsul.errors import BadRequest, NoLeader
from konsul.net import parse_host_port
from konsul.raft.types import Member


def member_json(member: Member) -> dict[str, Any]:
    out: dict[str, Any] = {"id": member.id, "address": member.address, "voter": member.voter}
    if member.http_address:
        out["http_address"] = member.http_address
    return out


def _leader_json(leader: Member) -> dict[str, Any]:
    return {
        "leader_id": leader.id,
        "leader_addr": leader.address,
        "leader_http_addr": leader.http_address,
    }


async def status(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    raft = node.status()
    body = dataclasses.asdict(raft)
    body["peers"] = [member_json(m) for m in raft.peers]
    return read_response(request, body, raft.applied_index)


async def leader(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    current = node.leader()
    if current is None:
        raise NoLeader("No leader is known right now; an election may be under way.")
    return read_response(request, _leader_json(current), node.status().applied_index)


async def peers(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    body = {"peers": [member_json(m) for m in node.peers()]}
    return read_response(request, body, node.status().applied_index)


def _string(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f'The body needs "{name}" as a non-empty string.')
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise BadRequest(f'"{name}" must not contain spaces or control characters.')
    return value


def _host_port(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = _string(body, name, required=required)
    if not value:
        return value
    try:
        parse_host_port(value)
    except ValueError:
        raise BadRequest(f'"{name}" must be host:port, got {value!r}.') from None
    return value


async def join(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    unknown = set(body) - {"node_id", "address", "http_address"}
    if unknown:
        fields = ", ".join(sorted(unknown))
        raise BadRequest(f"Unknown fields: {fields} (expected node_id, address, http_address).")
    member = Member(
        id=_string(body, "node_id"),
        address=_host_port(body, "address"),
        voter=False,  # joins as a non-voter; the leader promotes it once caught up
        http_address=_host_port(body, "http_address", required=False),
    )
    node = node_of(request)
    voter = await node.membership.join(member)
    return json_response(
        {
            "joined": member.id,
            "address": member.address,
            "voter": voter,  # false: joined, still catching up; the leader promotes it later
            "peers": [member_json(m) for m in node.peers()],
        }
    )


async def leave(request: web.Request) -> web.StreamResponse:
    node_id = request.match_info["id"]
    peers = await node_of(request).membership.leave(node_id)
    return json_response({"removed": node_id, "peers": [member_json(m) for m in peers]})


async def snapshot(request: web.Request) -> web.StreamResponse:
    info = await node_of(request).take_snapshot()
    return json_response({"index": info.index, "term": info.term, "size_bytes": info.size_bytes})


async def transfer_leadership(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request, optional=True)
    unknown = set(body) - {"node_id"}
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))} (expected node_id).")
    target = _string(body, "node_id", required=False) or None
    node = node_of(request)
    new_leader = await node.membership.transfer_leadership(target)
    current = node.leader()
    if current is not None and current.id == new_leader:
        return json_response(_leader_json(current))
    return json_response({"leader_id": new_leader})


async def bootstrap(request: web.Request) -> web.StreamResponse:
    if request.body_exists:  # a backup: the new cluster starts with its data
        return await backup.bootstrap_from_backup(request)
    node = node_of(request)
    await node.membership.bootstrap()
    raft = node.status()
    return json_response({"bootstrapped": True, "node_id": raft.node_id, "address": raft.address})


async def check_report(request: web.Request) -> web.StreamResponse:
    """A follower's changed check results (``konsul.checks.runner``); the answer names the
    members that probe. Internal: members call it on the leader."""
    body = await read_json_object(request)
    member = _string(body, "node_id")
    raw = body.get("results")
    if not isinstance(raw, list) or not all(
        isinstance(r, list) and len(r) == 4 and all(isinstance(v, str) for v in r[:3])
        and type(r[3]) is int for r in raw
    ):
        raise BadRequest('"results" must be a list of [check id, status, output, seen index].')
    results = [(r[0], r[1], r[2], r[3]) for r in raw]
    members = node_of(request).checks.accept_report(member, results)
    return json_response({"members": list(members)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/cluster/status", status)
    app.router.add_get("/cluster/leader", leader)
    app.router.add_get("/cluster/peers", peers)
    app.router.add_post("/cluster/join", join)
    app.router.add_delete("/cluster/leave/{id}", leave)
    app.router.add_post("/cluster/snapshot", snapshot)
    app.router.add_post("/cluster/transfer-leadership", transfer_leadership)
    app.router.add_post("/cluster/bootstrap", bootstrap)
    app.router.add_post("/cluster/checks/report", check_report)
