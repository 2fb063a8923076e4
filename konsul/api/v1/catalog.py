"""``/v1/catalog/*``: services, their instances and the nodes they are filed under.

``/v1/catalog/service/<name>`` lists the same instances in the same order as
``/v1/health/service/<name>`` (by instance id): some clients (Traefik) pair them by position.
A name without instances is ``200 []`` and an unknown node ``200 null``, as in Consul.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from konsul import watch
from konsul.api.acl import can_read_service
from konsul.api.http import node_of
from konsul.api.v1 import shapes
from konsul.api.v1.query import Read, answer, read_options, read_point, shared_answer

if TYPE_CHECKING:
    from konsul.store import Service, StateMachine

IndexOf = Callable[["StateMachine"], int]


def services_index(store: StateMachine) -> int:
    return store.services_index


def catalog_index(store: StateMachine) -> int:
    """Instances and checks: what health answers show."""
    return store.catalog_index


@dataclass(frozen=True, slots=True)
class View:
    """The catalog as one read sees it, once its read point is reached."""

    read: Read
    store: StateMachine
    index_of: IndexOf
    nodes: list[shapes.ConsulNode]
    home: shapes.ConsulNode  # where every instance is filed
    listed: bool  # the home node passes the request's ?node-meta filters
    readable: Callable[[str], bool]  # the service names the request's token may read

    def instances(self, name: str | None = None, tags: Iterable[str] = (),
                  passing: bool = False) -> list[Service]:
        """The instances the request may see: of one name, or all of them."""
        if not self.listed:
            return []
        if name is None:
            return [s for s in self.store.services() if self.readable(s.name)]
        return self.store.instances(name, tags, passing) if self.readable(name) else []

    def answer(self, request: web.Request, data: Any) -> web.Response:
        return answer(request, self.read, self.index_of(self.store), data)

    def shared(self, request: web.Request, build: Callable[[], Any]) -> web.Response:
        """``answer`` with a body encoded once per query and index: for the views whose
        index covers all they show but the home node."""
        return shared_answer(request, self.read, self.index_of(self.store), build, self.home)


async def view(request: web.Request, topic: watch.Topic, index_of: IndexOf) -> View:
    """The request's view once its read point is reached; a blocking read parks on ``topic``
    (what the answer shows) until ``index_of`` passes its index."""
    node = node_of(request)
    read = await read_point(request, topic, lambda: index_of(node.store))
    all_nodes = shapes.nodes(node)
    home = shapes.home(all_nodes)
    listed = shapes.node_matches(home, node_meta(request))
    return View(read, node.store, index_of, all_nodes, home, listed,
                lambda name: can_read_service(request, name))


def tags_of(request: web.Request) -> list[str]:
    return request.query.getall("tag", [])


def node_meta(request: web.Request) -> dict[str, str]:
    return shapes.node_meta_filter(request.query.getall("node-meta", []))


async def services(request: web.Request) -> web.StreamResponse:
    seen = await view(request, watch.Table("services"), services_index)

    def listing() -> dict[str, list[str]]:
        tags: dict[str, set[str]] = {}
        for svc in seen.instances():
            tags.setdefault(svc.name, set()).update(svc.tags)
        return {name: sorted(found) for name, found in tags.items()}

    return seen.shared(request, listing)


async def service(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    seen = await view(request, watch.Service(name), services_index)
    tags = tags_of(request)
    return seen.shared(request, lambda: [
        shapes.catalog_service(s, seen.home) for s in seen.instances(name, tags)
    ])


async def nodes(request: web.Request) -> web.StreamResponse:
    # Nodes are the Raft configuration, which has no table index of its own: any applied entry
    # may have changed it (a spurious wake-up is allowed, a missed change is not).
    seen = await view(request, watch.Table("applied"), lambda store: store.last_applied)
    meta = node_meta(request)
    return seen.answer(request, [n.to_json() for n in seen.nodes if shapes.node_matches(n, meta)])


async def node_services(request: web.Request) -> web.StreamResponse:
    seen = await view(request, watch.Table("services"), services_index)
    found = next((n for n in seen.nodes if n.name == request.match_info["node"]), None)
    if found is None:
        return seen.answer(request, None)
    held = seen.instances if found == seen.home else list
    return seen.shared(request, lambda: {
        "Node": found.to_json(),
        "Services": {s.id: shapes.agent_service(s) for s in held()},
    })


async def datacenters(request: web.Request) -> web.StreamResponse:
    return answer(request, read_options(request), 1, [shapes.DATACENTER])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/catalog/services", services)
    app.router.add_get("/catalog/service/{name}", service)
    app.router.add_get("/catalog/nodes", nodes)
    app.router.add_get("/catalog/node/{node}", node_services)
    app.router.add_get("/catalog/datacenters", datacenters)
