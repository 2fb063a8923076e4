"""``/v1/agent/*``: this member as a Consul agent that holds every instance (see ``shapes``).

Reads are this member's replica as it is (Consul's agent endpoints are local too); writes go
through the leader like every ``/v1`` write. A check update names the check only: whether it
exists and is a TTL check is decided when the update applies, so an update sent to a follower
right after a registration sent to the same follower is never refused by a replica that has not
caught up yet.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from konsul.api.acl import can_read_service, require
from konsul.api.http import node_of, read_body
from konsul.api.v1 import shapes
from konsul.api.v1.commit import client_address, commit
from konsul.api.v1.definition import fields, service_instance
from konsul.api.v1.query import refuse_filter
from konsul.errors import BadRequest, NotFound
from konsul.store import Rejected, commands


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _done(result: object) -> web.Response:
    """Consul answers agent writes with an empty 200; a refusal is its error."""
    if isinstance(result, Rejected):
        raise result.to_error()
    return web.Response(status=200)


async def self_(request: web.Request) -> web.StreamResponse:
    return _json(shapes.agent_self(node_of(request)))


async def members(request: web.Request) -> web.StreamResponse:
    return _json([shapes.member(n) for n in shapes.nodes(node_of(request))])


async def services(request: web.Request) -> web.StreamResponse:
    refuse_filter(request)
    store = node_of(request).store
    return _json({s.id: shapes.agent_service(s) for s in store.services()
                  if can_read_service(request, s.name)})


async def service(request: web.Request) -> web.StreamResponse:
    service_id = request.match_info["id"]
    found = node_of(request).store.service(service_id)
    if found is None:
        raise NotFound(f'unknown service ID: "{service_id}"')
    return _json(shapes.agent_service(found))


async def checks(request: web.Request) -> web.StreamResponse:
    refuse_filter(request)
    node = node_of(request)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    out = {}
    for svc in store.services():
        if not can_read_service(request, svc.name):
            continue
        for chk in store.service_checks(svc):
            out[chk.id] = shapes.health_check(chk, svc, on)
    return _json(dict(sorted(out.items())))


async def register(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await read_body(request))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    instance = service_instance(body, client_address(request))
    command = commands.service_register(instance)  # validated: the name is a string now
    require(request, "service", instance["name"], "write")
    return _done(await commit(request, command))


async def deregister(request: web.Request) -> web.StreamResponse:
    service_id = request.match_info["id"]
    result = await commit(request, commands.service_deregister(service_id))
    if isinstance(result, Rejected) and isinstance(result.to_error(), NotFound):
        raise NotFound(
            f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
            "not the service name."
        )
    return _done(result)


_STATUS_OF = {"pass": "passing", "warn": "warning", "fail": "critical"}


async def ttl(request: web.Request) -> web.StreamResponse:
    """``PUT /v1/agent/check/{pass,warn,fail}/<id>?note=``."""
    status = _STATUS_OF[request.match_info["verb"]]
    return await _update(request, status, request.query.get("note", ""))


async def update(request: web.Request) -> web.StreamResponse:
    """``PUT /v1/agent/check/update/<id>`` with ``{"Status", "Output"}``."""
    try:
        body = fields(orjson.loads(await read_body(request)), "The body")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    return await _update(request, body.get("status"), body.get("output") or "")


async def _update(request: web.Request, status: object, output: str) -> web.Response:
    check_id = request.match_info["id"]
    if not isinstance(status, str) or status not in ("passing", "warning", "critical"):
        raise BadRequest(f"Invalid check status: {status!r}")
    result = await commit(request, commands.check_update(check_id, status, output))
    if isinstance(result, Rejected) and isinstance(result.to_error(), NotFound):
        raise NotFound(f'Unknown check ID "{check_id}". Ensure that the check ID is passed, '
                       "not the check name.")
    return _done(result)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/agent/self", self_)
    app.router.add_get("/agent/members", members)
    app.router.add_get("/agent/services", services)
    app.router.add_get("/agent/service/{id}", service)
    app.router.add_get("/agent/checks", checks)
    app.router.add_put("/agent/service/register", register)
    # Consul before 1.0 took these writes as GET too, and python-consul 0.7.1 still sends them so.
    for method in ("PUT", "GET"):
        app.router.add_route(method, "/agent/service/deregister/{id}", deregister)
        app.router.add_route(method, "/agent/check/{verb:pass|warn|fail}/{id}", ttl)
    app.router.add_put("/agent/check/update/{id}", update)
