"""``/v1/health/*``: instances with their checks, and checks by service, node or state.

Konsul has no node-level checks (Consul's ``serfHealth``): an instance's checks are its own.
``?passing`` keeps the instances all of whose checks pass, as Consul does.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from konsul import watch
from konsul.api.v1 import shapes
from konsul.api.v1.catalog import View, catalog_index, tags_of, view
from konsul.errors import BadRequest
from konsul.store import Service
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


def _checks(seen: View, instances: Iterable[Service], status: str = "any") -> list[shapes.JSON]:
    return [shapes.health_check(c, s, seen.home)
            for s in instances for c in seen.store.service_checks(s)
            if status == "any" or c.status == status]


async def service(request: web.Request) -> web.StreamResponse:
    tags, passing = tags_of(request), _passing(request)
    name = request.match_info["name"]
    seen = await view(request, watch.Service(name), catalog_index)
    return seen.shared(request, lambda: [
        shapes.service_entry(seen.store, s, seen.home)
        for s in seen.instances(name, tags, passing)
    ])


async def service_checks(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    seen = await view(request, watch.Service(name), catalog_index)
    return seen.shared(request, lambda: _checks(seen, seen.instances(name)))


async def state(request: web.Request) -> web.StreamResponse:
    wanted = request.match_info["state"]
    if wanted != "any" and wanted not in STATUSES:
        raise BadRequest("Invalid check state")
    seen = await view(request, watch.Table("catalog"), catalog_index)
    return seen.shared(request, lambda: _checks(seen, seen.instances(), wanted))


async def node_checks(request: web.Request) -> web.StreamResponse:
    seen = await view(request, watch.Table("catalog"), catalog_index)
    if request.match_info["node"] != seen.home.name:
        return seen.answer(request, [])
    return seen.shared(request, lambda: _checks(seen, seen.instances()))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health/service/{name}", service)
    app.router.add_get("/health/checks/{name}", service_checks)
    app.router.add_get("/health/state/{state}", state)
    app.router.add_get("/health/node/{node}", node_checks)
