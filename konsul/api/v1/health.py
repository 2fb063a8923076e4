"""``/v1/health/*``: instances with their checks, and checks by service, node or state.

Konsul has no node-level checks (Consul's ``serfHealth``): an instance's checks are its own.
``?passing`` keeps the instances all of whose checks pass, as Consul does.
"""

from __future__ import annotations

from aiohttp import web

from konsul.api.acl import can_read_service
from konsul.api.http import node_of
from konsul.api.v1 import shapes
from konsul.api.v1.catalog import node_meta, tags_of
from konsul.api.v1.query import answer, read_point
from konsul.errors import BadRequest
from konsul.store.types import STATUSES

_TRUE = ("", "1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def _passing(request: web.Request) -> bool:
    """``?passing`` as Go's ParseBool reads it (present without a value: true)."""
    raw = request.query.get("passing")
    if raw is None or raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    raise BadRequest(f"Invalid value for ?passing: {raw!r}")


async def service(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    tags, passing = tags_of(request), _passing(request)
    node = node_of(request)
    read = await read_point(request, lambda: node.store.catalog_index)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    found = store.instances(name, tags, passing) if shapes.node_matches(
        on, node_meta(request)) and can_read_service(request, name) else []
    data = [shapes.service_entry(store, s, on) for s in found]
    return answer(request, read, store.catalog_index, data)


async def service_checks(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    node = node_of(request)
    read = await read_point(request, lambda: node.store.catalog_index)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    data = []
    if shapes.node_matches(on, node_meta(request)) and can_read_service(request, name):
        data = [shapes.health_check(c, s, on)
                for s in store.instances(name) for c in store.service_checks(s)]
    return answer(request, read, store.catalog_index, data)


async def state(request: web.Request) -> web.StreamResponse:
    wanted = request.match_info["state"]
    if wanted != "any" and wanted not in STATUSES:
        raise BadRequest("Invalid check state")
    node = node_of(request)
    read = await read_point(request, lambda: node.store.catalog_index)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    data = []
    if shapes.node_matches(on, node_meta(request)):
        data = [shapes.health_check(c, s, on)
                for s in store.services() if can_read_service(request, s.name)
                for c in store.service_checks(s) if wanted == "any" or c.status == wanted]
    return answer(request, read, store.catalog_index, data)


async def node_checks(request: web.Request) -> web.StreamResponse:
    name = request.match_info["node"]
    node = node_of(request)
    read = await read_point(request, lambda: node.store.catalog_index)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    data = []
    if name == on.name:
        data = [shapes.health_check(c, s, on)
                for s in store.services() if can_read_service(request, s.name)
                for c in store.service_checks(s)]
    return answer(request, read, store.catalog_index, data)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health/service/{name}", service)
    app.router.add_get("/health/checks/{name}", service_checks)
    app.router.add_get("/health/state/{state}", state)
    app.router.add_get("/health/node/{node}", node_checks)
