"""Access control at the HTTP edge: the token a request carries, what each route needs, and the
``/acl`` API.

With ``KONSUL_ACL_ENABLED`` every request goes through ``guard`` (installed by ``install``):

1. routes that stay open pass untouched: the probes (``/health/live``, ``/health/ready``) and
   ``POST /acl/bootstrap``;
2. the token is read from ``X-Konsul-Token``, ``X-Consul-Token``, ``Authorization: Bearer``
   or (deprecated) ``?token=``: a malformed token, or carriers that disagree, are a 400;
3. it is resolved (``konsul.acl.resolver``): no token is the anonymous token, an unknown one a
   403 "ACL not found";
4. the route's need (``NEEDS``: method and route pattern → a check) must hold, or 403. A route
   nobody listed needs ``operator:write``: a new endpoint is closed until someone decides;
5. handlers whose answer is a listing filter it with ``authorizer(request)``; handlers whose
   need depends on the body (``/txn``, ``/register``) check it with ``require``.

With ACLs off nothing of this runs and ``authorizer`` allows everything. A token never appears
in an answer, a log line, a metric label or a ``Location`` header (a redirect drops ``?token=``;
a forwarded write carries the token in a header).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from konsul.acl.resolver import Identity
from konsul.acl.rules import ALLOW_ALL, Authorizer, Kind
from konsul.acl.tokens import hash_secret, valid_secret
from konsul.api.http import json_response, node_of, read_json_object
from konsul.errors import BadRequest, Conflict, NotFound, PermissionDenied
from konsul.store import commands
from konsul.store.acl import ANONYMOUS_TOKEN_ID, AclPolicy, AclTable, AclToken
from konsul.store.types import Rejected

if TYPE_CHECKING:
    from konsul.node import Node

Access = Literal["read", "write"]
TOKEN_HEADERS = ("X-Konsul-Token", "X-Consul-Token")
MAX_TOKEN_LEN = 256
IDENTITY = web.RequestKey("konsul.identity", Identity)
TOKEN = web.RequestKey("konsul.token", str)  # the secret, for a forwarded write only


# ------------------------------------------------------------------------------ the token


def request_token(request: web.BaseRequest) -> str | None:
    """The token the request carries, from any of the four carriers (``None``: none)."""
    found: list[str] = []
    for name in TOKEN_HEADERS:
        value = request.headers.get(name, "").strip()
        if value:
            found.append(value)
    auth = request.headers.get("Authorization", "").strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise BadRequest("The Authorization header must be 'Bearer <token>'.")
        found.append(value.strip())
    if "token=" in request.query_string:
        value = request.query.get("token", "")
        if value:
            found.append(value)
    if not found:
        return None
    token = found[0]
    if any(other != token for other in found[1:]):
        raise BadRequest("The request carries different tokens; send exactly one.")
    if not (len(token) <= MAX_TOKEN_LEN and token.isascii() and token.isprintable()
            and " " not in token):
        raise BadRequest("The token is malformed: printable ASCII without spaces, at most "
                         f"{MAX_TOKEN_LEN} characters.")
    return token


def authorizer(request: web.BaseRequest) -> Authorizer:
    """What the request's token may do (everything when ACLs are off)."""
    identity = request.get(IDENTITY)
    return identity.authorizer if identity is not None else ALLOW_ALL


def _denied(request: web.BaseRequest, what: str) -> PermissionDenied:
    identity = request.get(IDENTITY)
    who = identity.describe() if identity is not None else "this token"
    return PermissionDenied(f"Permission denied: {who} lacks {what}.")


def require(request: web.BaseRequest, kind: Kind, name: str, access: Access) -> None:
    if not authorizer(request).allows(kind, name, access):
        target = "" if kind == "operator" else f" on {name!r}"
        raise _denied(request, f"{kind}:{access}{target}")


def can_read_service(request: web.BaseRequest, name: str) -> bool:
    return authorizer(request).allows("service", name, "read")


def require_key_prefix(request: web.BaseRequest, prefix: str) -> None:
    """Writing every key under ``prefix`` at once (a recursive delete)."""
    if not authorizer(request).key_prefix_writable(prefix):
        raise _denied(request, f"key:write on every key under {prefix!r}")


# ------------------------------------------------------------------------------ what routes need

Need = Callable[[web.Request], None]


def _operator(access: Access) -> Need:
    return lambda request: require(request, "operator", "", access)


def _key(access: Access) -> Need:
    def need(request: web.Request) -> None:
        key = request.match_info.get("key", "")
        if request.method == "DELETE" and "recurse" in request.query:
            require_key_prefix(request, key or request.query.get("prefix", ""))
        else:
            require(request, "key", key, access)
    return need


def _v1_key(access: Access) -> Need:
    """Consul's KV: leading slashes dropped; ``?recurse``/``?keys`` reads are filtered
    listings, a ``?recurse`` delete writes the whole prefix."""

    def need(request: web.Request) -> None:
        key = request.match_info.get("key", "").lstrip("/")
        query = request.query
        if request.method == "GET" and ("recurse" in query or "keys" in query):
            return
        if request.method == "DELETE" and "recurse" in query:
            require_key_prefix(request, key)
        else:
            require(request, "key", key, access)
    return need


def _service(access: Access, name: Callable[[web.Request], str | None]) -> Need:
    def need(request: web.Request) -> None:
        found = name(request)
        if found is not None:  # an unknown instance or check: the handler answers 404
            require(request, "service", found, access)
    return need


def _named(request: web.Request) -> str:
    return request.match_info["name"]


def _instance_name(request: web.Request) -> str | None:
    svc = node_of(request).store.service(request.match_info["id"])
    return svc.name if svc is not None else None


def _check_service_name(request: web.Request) -> str | None:
    store = node_of(request).store
    check = store.check(request.match_info["id"])
    svc = store.service(check.service_id) if check is not None else None
    return svc.name if svc is not None else None


def _metrics(request: web.Request) -> None:
    if not node_of(request).settings.acl.metrics_public:
        require(request, "operator", "", "read")


def _any_token(request: web.Request) -> None:
    """A known token (or the anonymous one): the handler decides or filters."""


OPEN: Need | None = None

NEEDS: dict[tuple[str, str], Need | None] = {
    # Probes stay open, like bootstrapping ACLs (it works once).
    ("GET", "/health/live"): OPEN,
    ("GET", "/health/ready"): OPEN,
    ("POST", "/acl/bootstrap"): OPEN,
    # KV
    ("GET", "/kv/{key}"): _key("read"),
    ("PUT", "/kv/{key}"): _key("write"),
    ("POST", "/kv/{key}"): _key("write"),
    ("DELETE", "/kv/{key}"): _key("write"),
    ("GET", "/kv/"): _any_token,  # filtered
    ("DELETE", "/kv/"): _key("write"),
    ("POST", "/txn"): _any_token,  # per operation
    # Services and checks
    ("PUT", "/register"): _any_token,  # service:write on the body's name
    ("DELETE", "/deregister/{id}"): _service("write", _instance_name),
    ("PUT", "/heartbeat/{id}"): _service("write", _instance_name),
    ("GET", "/services"): _any_token,  # filtered
    ("GET", "/services/{name}"): _service("read", _named),
    ("GET", "/health/checks"): _any_token,  # filtered
    ("GET", "/health/service/{name}"): _service("read", _named),
    ("PUT", "/health/check/{id}"): _service("write", _check_service_name),
    # The node and the cluster
    ("GET", "/health"): _operator("read"),
    ("GET", "/metrics"): _metrics,
    ("GET", "/cluster/status"): _operator("read"),
    ("GET", "/cluster/leader"): _operator("read"),
    ("GET", "/cluster/peers"): _operator("read"),
    ("POST", "/cluster/join"): _operator("write"),
    ("DELETE", "/cluster/leave/{id}"): _operator("write"),
    ("POST", "/cluster/snapshot"): _operator("write"),
    ("POST", "/cluster/transfer-leadership"): _operator("write"),
    ("POST", "/cluster/bootstrap"): _operator("write"),
    ("POST", "/cluster/checks/report"): _operator("write"),  # members' check results
    # Backups hold everything (ACL tables included); restores and recovery replace it
    ("GET", "/cluster/snapshot"): _operator("write"),
    ("POST", "/cluster/restore"): _operator("write"),
    ("POST", "/cluster/recover"): _operator("write"),
    ("GET", "/export"): _operator("write"),  # and filtered
    ("POST", "/import"): _operator("write"),
    # The web UI: its files are open (the page asks for a token); what it shows is not
    ("GET", "/"): OPEN,
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/"): OPEN,
    ("GET", "/ui/{name}"): OPEN,
    ("GET", "/ui/api/cluster"): _operator("read"),
    # ACLs
    ("GET", "/acl/token/self"): _any_token,
    ("GET", "/acl/policies"): _operator("read"),
    ("GET", "/acl/policy/{id}"): _operator("read"),
    ("GET", "/acl/tokens"): _operator("read"),
    ("GET", "/acl/token/{id}"): _operator("read"),
    # Consul's /v1 surface: the same resources (listings filtered, as Consul does)
    ("GET", "/v1/kv/{key}"): _v1_key("read"),
    ("PUT", "/v1/kv/{key}"): _v1_key("write"),
    ("DELETE", "/v1/kv/{key}"): _v1_key("write"),
    ("PUT", "/v1/txn"): _any_token,  # per operation
    ("GET", "/v1/agent/self"): _operator("read"),
    ("GET", "/v1/agent/members"): _operator("read"),
    ("GET", "/v1/agent/services"): _any_token,  # filtered
    ("GET", "/v1/agent/service/{id}"): _service("read", _instance_name),
    ("GET", "/v1/agent/checks"): _any_token,  # filtered
    ("PUT", "/v1/agent/service/register"): _any_token,  # service:write on the body's name
    ("PUT", "/v1/agent/service/deregister/{id}"): _service("write", _instance_name),
    # As GET too, as Consul before 1.0 took them (python-consul 0.7.1 still sends them so).
    ("GET", "/v1/agent/service/deregister/{id}"): _service("write", _instance_name),
    ("PUT", "/v1/agent/check/{verb}/{id}"): _service("write", _check_service_name),
    ("GET", "/v1/agent/check/{verb}/{id}"): _service("write", _check_service_name),
    ("PUT", "/v1/agent/check/update/{id}"): _service("write", _check_service_name),
    ("GET", "/v1/catalog/services"): _any_token,  # filtered
    ("GET", "/v1/catalog/service/{name}"): _any_token,  # filtered
    ("GET", "/v1/catalog/nodes"): _operator("read"),
    ("GET", "/v1/catalog/node/{node}"): _operator("read"),  # and filtered
    ("GET", "/v1/catalog/datacenters"): _any_token,
    ("GET", "/v1/health/service/{name}"): _any_token,  # filtered
    ("GET", "/v1/health/checks/{name}"): _any_token,  # filtered
    ("GET", "/v1/health/state/{state}"): _any_token,  # filtered
    ("GET", "/v1/health/node/{node}"): _operator("read"),  # and filtered
    ("GET", "/v1/status/leader"): _operator("read"),
    ("GET", "/v1/status/peers"): _operator("read"),
}
FAIL_CLOSED = _operator("write")


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else ""


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.apps[-1] is not request.app:
        # A sub-application (Consul's /v1) guards its own routes, inside its own error
        # handling, so that its denials take its shape (Consul's text 403).
        return await handler(request)
    route = _route_of(request)
    method = "GET" if request.method == "HEAD" else request.method
    need = NEEDS.get((method, route), FAIL_CLOSED) if route else _any_token
    if need is None:  # OPEN
        return await handler(request)
    identity = resolve(request)
    request[IDENTITY] = identity
    need(request)
    return await handler(request)


def resolve(request: web.BaseRequest) -> Identity:
    node = node_of(request)  # type: ignore[arg-type]
    token = request_token(request)
    assert node.acl is not None
    identity = node.acl.resolve(token)
    if identity is None:
        raise PermissionDenied("ACL not found: the token is unknown (or was deleted).")
    if token is not None:
        request[TOKEN] = token
    return identity


def forward_headers(request: web.BaseRequest) -> dict[str, str]:
    """What a forwarded request carries so that the leader sees the same token."""
    token = request.get(TOKEN)
    return {TOKEN_HEADERS[0]: token} if token else {}


def install(app: web.Application, node: Node) -> None:
    """ACL routes always (they refuse while ACLs are off); the guard when they are on."""
    add_routes(app)
    install_guard(app, node)


def install_guard(app: web.Application, node: Node) -> None:
    """The guard, innermost, on an application or a sub-application, when ACLs are on."""
    if node.settings.acl.enabled:
        app.middlewares.append(guard)


# ------------------------------------------------------------------------------ the /acl API


def _table(request: web.Request) -> AclTable:
    node = node_of(request)
    if not node.settings.acl.enabled:
        raise BadRequest("ACLs are not enabled on this node (KONSUL_ACL_ENABLED=false).")
    return node.store.acl


def _known(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        expected = ", ".join(sorted(allowed))
        raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))} (expected {expected}).")


async def _propose(request: web.Request, command: bytes) -> None:
    result = await node_of(request).propose(command)
    if isinstance(result, Rejected):
        raise result.to_error()


def _token_json(table: AclTable, token: AclToken, secret: str | None = None) -> dict[str, Any]:
    body = table.token_json(token)
    if secret is not None:  # shown once, at creation: only its hash is kept
        body["secret_id"] = secret
    return body


async def bootstrap(request: web.Request) -> web.StreamResponse:
    table = _table(request)
    if table.bootstrapped:
        raise Conflict(f"ACLs were already bootstrapped (at index {table.bootstrapped}).")
    accessor, secret = str(uuid.uuid4()), str(uuid.uuid4())
    await _propose(request, commands.acl_bootstrap(
        accessor, hash_secret(secret), "Bootstrap management token", False
    ))
    token = node_of(request).store.acl.token(accessor)
    assert token is not None
    return json_response(_token_json(node_of(request).store.acl, token, secret))


# ------------------------------------------------------------------------------ policies


def _policy(table: AclTable, ref: str) -> AclPolicy:
    found = table.policy(ref) or table.policy_named(ref)
    if found is None:
        raise NotFound(f"No policy with id or name {ref!r}.")
    return found


async def list_policies(request: web.Request) -> web.StreamResponse:
    return json_response([p.to_json() for p in _table(request).all_policies()])


async def read_policy(request: web.Request) -> web.StreamResponse:
    return json_response(_policy(_table(request), request.match_info["id"]).to_json())


async def create_policy(request: web.Request) -> web.StreamResponse:
    _table(request)
    body = await read_json_object(request)
    _known(body, {"name", "description", "rules"})
    if "name" not in body:
        raise BadRequest('The body needs a "name".')
    policy_id = str(uuid.uuid4())
    await _propose(request, commands.acl_policy_set(
        policy_id, body["name"], body.get("description"), body.get("rules", {})
    ))
    return json_response(_policy(node_of(request).store.acl, policy_id).to_json())


async def update_policy(request: web.Request) -> web.StreamResponse:
    current = _policy(_table(request), request.match_info["id"])
    body = await read_json_object(request)
    _known(body, {"name", "description", "rules"})
    await _propose(request, commands.acl_policy_set(
        current.id, body.get("name", current.name),
        body.get("description", current.description),
        body.get("rules", current.rules.to_json()),
    ))
    return json_response(_policy(node_of(request).store.acl, current.id).to_json())


async def delete_policy(request: web.Request) -> web.StreamResponse:
    current = _policy(_table(request), request.match_info["id"])
    await _propose(request, commands.acl_policy_delete(current.id))
    return json_response({"deleted": current.id})


# ------------------------------------------------------------------------------ tokens


def _token(table: AclTable, accessor: str) -> AclToken:
    found = table.token(accessor)
    if found is None:
        raise NotFound(f"No token with accessor id {accessor!r}.")
    return found


def _policy_ids(table: AclTable, raw: object) -> list[str]:
    """``[{"id": ...} | {"name": ...} | "<id or name>", ...]`` → policy ids."""
    if not isinstance(raw, list):
        raise BadRequest('"policies" must be a list of {"id"} or {"name"} objects.')
    ids: list[str] = []
    for i, item in enumerate(raw):
        ref = item if isinstance(item, str) else (
            item.get("id") or item.get("name") if isinstance(item, dict) else None
        )
        if not isinstance(ref, str):
            raise BadRequest(f'policies[{i}] must be {{"id": ...}} or {{"name": ...}}.')
        found = table.policy(ref) or table.policy_named(ref)
        if found is None:
            raise BadRequest(f"policies[{i}]: no policy with id or name {ref!r}.")
        ids.append(found.id)
    return ids


async def list_tokens(request: web.Request) -> web.StreamResponse:
    table = _table(request)
    return json_response([table.token_json(t) for t in table.all_tokens()])


async def read_token(request: web.Request) -> web.StreamResponse:
    table = _table(request)
    return json_response(table.token_json(_token(table, request.match_info["id"])))


async def token_self(request: web.Request) -> web.StreamResponse:
    table = _table(request)
    identity = request.get(IDENTITY)
    accessor = identity.accessor_id if identity is not None else ANONYMOUS_TOKEN_ID
    return json_response(table.token_json(_token(table, accessor)))


async def create_token(request: web.Request) -> web.StreamResponse:
    table = _table(request)
    body = await read_json_object(request, optional=True)
    _known(body, {"description", "policies", "secret_id", "accessor_id"})
    secret = body.get("secret_id") or str(uuid.uuid4())
    if not isinstance(secret, str) or not valid_secret(secret):
        raise BadRequest('"secret_id" must be 16 to 256 printable characters without spaces.')
    accessor = body.get("accessor_id") or str(uuid.uuid4())
    if not isinstance(accessor, str):
        raise BadRequest('"accessor_id" must be a string.')
    if table.token(accessor) is not None:
        raise Conflict(f"A token with accessor id {accessor!r} exists.")
    ids = _policy_ids(table, body.get("policies", []))
    await _propose(request, commands.acl_token_set(
        accessor, hash_secret(secret), body.get("description"), ids
    ))
    store = node_of(request).store.acl
    return json_response(_token_json(store, _token(store, accessor), secret))


async def update_token(request: web.Request) -> web.StreamResponse:
    table = _table(request)
    current = _token(table, request.match_info["id"])
    body = await read_json_object(request)
    _known(body, {"description", "policies"})
    ids = _policy_ids(table, body["policies"]) if "policies" in body else list(current.policies)
    await _propose(request, commands.acl_token_set(
        current.accessor_id, "", body.get("description", current.description), ids
    ))
    store = node_of(request).store.acl
    return json_response(store.token_json(_token(store, current.accessor_id)))


async def delete_token(request: web.Request) -> web.StreamResponse:
    current = _token(_table(request), request.match_info["id"])
    await _propose(request, commands.acl_token_delete(current.accessor_id))
    return json_response({"deleted": current.accessor_id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/acl/bootstrap", bootstrap)
    app.router.add_get("/acl/policies", list_policies)
    app.router.add_post("/acl/policy", create_policy)
    app.router.add_get("/acl/policy/{id}", read_policy)
    app.router.add_put("/acl/policy/{id}", update_policy)
    app.router.add_delete("/acl/policy/{id}", delete_policy)
    app.router.add_get("/acl/tokens", list_tokens)
    app.router.add_post("/acl/token", create_token)
    app.router.add_get("/acl/token/self", token_self)
    app.router.add_get("/acl/token/{id}", read_token)
    app.router.add_put("/acl/token/{id}", update_token)
    app.router.add_delete("/acl/token/{id}", delete_token)

