"""Node health (``/health``, ``/health/live``, ``/health/ready``) and service checks
(``/health/checks``, ``/health/service/<name>``, ``/health/check/<id>``)."""

from __future__ import annotations

from aiohttp import web

import konsul
from konsul.api.acl import authorizer
from konsul.api.encoded import shared_read_response
from konsul.api.errors import RETRY_AFTER, read_error
from konsul.api.http import json_response, node_of, read_json_object, read_point
from konsul.api.writes import write
from konsul.errors import BadRequest, NotFound
from konsul.store import StateMachine, commands
from konsul.store.types import Check
from konsul.watch import Service, Table


async def health(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    status = node.status()
    ready = node.is_ready()
    store = node.store
    return json_response(
        {
            "status": "healthy" if ready else "degraded",
            "version": konsul.__version__,
            "node_id": status.node_id,
            "ready": ready,
            "cluster": {
                "enabled": node.settings.raft.enabled,
                "state": status.state,
                "leader": status.leader_id,
            },
            "store": {
                "kv_keys": store.kv_count,
                "services": store.service_count,
                "applied_index": status.applied_index,
            },
        }
    )


async def live(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "alive"})


async def ready(request: web.Request) -> web.StreamResponse:
    reason = node_of(request).not_ready_reason()
    if reason is None:
        return json_response({"status": "ready"})
    return json_response(
        {"error": "not ready", "message": f"Not ready: {reason}.", "status": "not ready"},
        status=503,
        headers=RETRY_AFTER,
    )


async def checks(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    await read_point(request, Table("checks"), lambda: node.store.checks_index)
    store = node.store
    auth = authorizer(request)
    return shared_read_response(request, store.checks_index, lambda: [
        c.to_json() for c in store.checks() if auth.allows("service", _name(store, c), "read")
    ])


def _name(store: StateMachine, check: Check) -> str:
    """The service name a check belongs to (what ACL rules name)."""
    svc = store.service(check.service_id)
    return svc.name if svc is not None else check.service_id


async def service_checks(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    name = request.match_info["name"]
    await read_point(request, Service(name), lambda: node.store.catalog_index)
    store = node.store
    if not store.instances(name):
        return read_error(
            request, NotFound(f"No instances of service {name!r}."), store.catalog_index
        )
    return shared_read_response(request, store.catalog_index, lambda: [
        c.to_json() for c in store.checks_of_name(name)
    ])


async def update_check(request: web.Request) -> web.StreamResponse:
    check_id = request.match_info["id"]
    body = await read_json_object(request)
    unknown = set(body) - {"status", "output"}
    if unknown:
        fields = ", ".join(sorted(unknown))
        raise BadRequest(f"Unknown fields: {fields} (expected status, output).")
    if "status" not in body:
        raise BadRequest('The body needs a "status": passing, warning or critical.')
    command = commands.check_update(check_id, body["status"], body.get("output"))
    # Refuse early what apply would refuse anyway: an unknown check, a check that is not TTL.
    node_of(request).store.validate_check_update(check_id)
    return await write(request, command)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/checks", checks)
    app.router.add_get("/health/service/{name}", service_checks)
    app.router.add_put("/health/check/{id}", update_check)
