"""``/v1/catalog/*``: services, their instances and the nodes they are filed under.

``/v1/catalog/service/<name>`` lists the same instances in the same order as
``/v1/health/service/<name>`` (by instance id): some clients (Traefik) pair them by position.
A name without instances is ``200 []`` and an unknown node ``200 null``, as in Consul.
"""

from __future__ import annotations

from aiohttp import web

from konsul.api.acl import can_read_service
from konsul.api.http import node_of
from konsul.api.v1 import shapes
from konsul.api.v1.query import answer, read_options, read_point


def tags_of(request: web.Request) -> list[str]:
    return request.query.getall("tag", [])


def node_meta(request: web.Request) -> dict[str, str]:
    return shapes.node_meta_filter(request.query.getall("node-meta", []))


async def services(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    read = await read_point(request, lambda: node.store.services_index)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    listing: dict[str, set[str]] = {}
    if shapes.node_matches(on, node_meta(request)):
        for svc in store.services():
            if can_read_service(request, svc.name):
                listing.setdefault(svc.name, set()).update(svc.tags)
    data = {name: sorted(tags) for name, tags in listing.items()}
    return answer(request, read, store.services_index, data)


async def service(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    node = node_of(request)
    read = await read_point(request, lambda: node.store.services_index)
    store = node.store
    on = shapes.home(shapes.nodes(node))
    found = store.instances(name, tags_of(request)) if shapes.node_matches(
        on, node_meta(request)) and can_read_service(request, name) else []
    data = [shapes.catalog_service(s, on) for s in found]
    return answer(request, read, store.services_index, data)


async def nodes(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    # Nodes are the Raft configuration, which has no table index of its own: any applied entry
    # may have changed it (a spurious wake-up is allowed, a missed change is not).
    read = await read_point(request, lambda: node.store.last_applied)
    meta = node_meta(request)
    data = [n.to_json() for n in shapes.nodes(node) if shapes.node_matches(n, meta)]
    return answer(request, read, node.store.last_applied, data)


async def node_services(request: web.Request) -> web.StreamResponse:
    name = request.match_info["node"]
    node = node_of(request)
    read = await read_point(request, lambda: node.store.services_index)
    store = node.store
    all_nodes = shapes.nodes(node)
    found = next((n for n in all_nodes if n.name == name), None)
    data = None
    if found is not None:
        held = [s for s in store.services() if can_read_service(request, s.name)
                ] if found == shapes.home(all_nodes) else []
        data = {"Node": found.to_json(), "Services": {s.id: shapes.agent_service(s) for s in held}}
    return answer(request, read, store.services_index, data)


async def datacenters(request: web.Request) -> web.StreamResponse:
    return answer(request, read_options(request), 1, [shapes.DATACENTER])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/catalog/services", services)
    app.router.add_get("/catalog/service/{name}", service)
    app.router.add_get("/catalog/nodes", nodes)
    app.router.add_get("/catalog/node/{node}", node_services)
    app.router.add_get("/catalog/datacenters", datacenters)
