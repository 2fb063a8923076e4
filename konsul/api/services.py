"""Service instances: ``/register``, ``/deregister/<id>``, ``/heartbeat/<id>``, ``/services``.

Reads always go through ``node.store`` after waiting: a snapshot restore replaces its tables.
"""

from __future__ import annotations

from aiohttp import web

from konsul.api.acl import authorizer, require
from konsul.api.encoded import shared_read_response
from konsul.api.errors import read_error
from konsul.api.http import flag, node_of, read_json_object, read_point
from konsul.api.writes import write
from konsul.errors import BadRequest, NotFound
from konsul.store import commands
from konsul.watch import Service, Table


async def register(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    command = commands.service_register(body)  # validated: the name is a string now
    require(request, "service", body["name"], "write")
    return await write(request, command)


async def deregister(request: web.Request) -> web.StreamResponse:
    return await write(request, commands.service_deregister(request.match_info["id"]))


async def heartbeat(request: web.Request) -> web.StreamResponse:
    return await write(request, commands.service_heartbeat(request.match_info["id"]))


def _tags(request: web.Request) -> list[str]:
    return request.query.getall("tag", [])


def _meta(request: web.Request) -> dict[str, str]:
    meta: dict[str, str] = {}
    for name, value in request.query.items():
        if name.startswith("meta."):
            key = name[len("meta."):]
            if not key:
                raise BadRequest("A meta filter needs a key: ?meta.<key>=<value>.")
            meta[key] = value
    return meta


async def list_services(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    name = request.query.get("name")
    tags, meta, passing = _tags(request), _meta(request), flag(request, "passing")
    # The catalog index covers checks too: a listing shows each instance's aggregated status.
    topic = Table("catalog") if name is None else Service(name)
    await read_point(request, topic, lambda: node.store.catalog_index)
    store = node.store
    auth = authorizer(request)
    return shared_read_response(request, store.catalog_index, lambda: [
        store.service_json(s) for s in store.services(name, tags, meta, passing)
        if auth.allows("service", s.name, "read")
    ])


async def service_by_name(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    name = request.match_info["name"]
    tags, passing = _tags(request), flag(request, "passing")
    await read_point(request, Service(name), lambda: node.store.catalog_index)
    store = node.store
    if not store.instances(name):
        return read_error(
            request, NotFound(f"No instances of service {name!r}."), store.catalog_index
        )
    return shared_read_response(request, store.catalog_index, lambda: [
        store.service_json(s) for s in store.instances(name, tags, passing)
    ])


def add_routes(app: web.Application) -> None:
    app.router.add_put("/register", register)
    app.router.add_delete("/deregister/{id}", deregister)
    app.router.add_put("/heartbeat/{id}", heartbeat)
    app.router.add_get("/services", list_services)
    app.router.add_get("/services/{name}", service_by_name)
