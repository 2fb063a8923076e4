"""ACLs on one node: every endpoint against every kind of token, filtered listings, the /acl
API, the token carriers, and generated tokens and rules that must never produce a 500."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from konsul import cli
from konsul.api import create_app
from konsul.errors import NotLeader
from konsul.node import Node
from konsul.raft.types import Member
from konsul.store import StateMachine
from konsul.store.acl import ANONYMOUS_TOKEN_ID
from tests.api.conftest import KonsulTestServer, settings_for, wait_until
from tests.processes import free_port

MANAGEMENT = "management-secret-0123456789"
UNKNOWN = "no-such-token-0123456789abcdef"


@dataclass
class Secured:
    client: TestClient[Any, Any]
    node: Node
    tokens: dict[str, str | None]  # who -> secret (None: send no token)

    async def call(self, who: str, method: str, path: str, body: Any = None) -> Any:
        token = self.tokens[who]
        headers = {"X-Konsul-Token": token} if token else {}
        return await self.client.request(method, path, json=body, headers=headers)

    async def ok(self, who: str, method: str, path: str, body: Any = None) -> Any:
        resp = await self.call(who, method, path, body)
        text = await resp.text()
        assert resp.status < 300, f"{who} {method} {path}: {resp.status} {text}"
        return await resp.json() if text else None


POLICIES = {
    "app-read": {"key_prefix": {"app/": "read"}},
    "other-write": {"key_prefix": {"other/": "write"}},
    "web": {"service_prefix": {"web": "write"}},
    "ops": {"operator": "write"},
}
HOLDERS = {"reader": "app-read", "writer": "other-write", "service": "web", "operator": "ops"}


@pytest.fixture
async def secured(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Secured]:
    node = Node(settings_for(
        tmp_path, KONSUL_ACL_ENABLED="true", KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN=MANAGEMENT,
    ))
    await node.start()
    await wait_until(lambda: node.is_ready() and bool(node.store.acl.bootstrapped))
    client = await aiohttp_client(KonsulTestServer(create_app(node)))
    s = Secured(client, node, {"anonymous": None, "unknown": UNKNOWN, "management": MANAGEMENT})
    for name, rules in POLICIES.items():
        await s.ok("management", "POST", "/acl/policy", {"name": name, "rules": rules})
    for who, policy in HOLDERS.items():
        made = await s.ok("management", "POST", "/acl/token",
                          {"description": who, "policies": [{"name": policy}]})
        s.tokens[who] = made["secret_id"]
    for key in ("app/a", "other/b", "secret/c"):
        await s.ok("management", "PUT", f"/kv/{key}", {"value": key})
    for name in ("web", "db"):
        await s.ok("management", "PUT", "/register",
                   {"name": name, "checks": [{"ttl": "1m", "id": f"{name}-ttl"}]})
    yield s
    await node.stop()


EVERYONE = {"anonymous", "reader", "writer", "service", "operator", "management"}
MGMT = {"management"}
OPS = {"operator", "management"}
# (method, path, body, who may): everyone else gets 403; the unknown token gets 403 everywhere.
MATRIX: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/kv/app/a", None, {"reader", "management"}),
    ("GET", "/kv/other/b", None, {"writer", "management"}),
    ("GET", "/kv/secret/c", None, MGMT),
    ("PUT", "/kv/app/a", {"value": "x"}, MGMT),
    ("PUT", "/kv/other/x", {"value": "x"}, {"writer", "management"}),
    ("DELETE", "/kv/other/x", None, {"writer", "management"}),
    ("DELETE", "/kv/other/?recurse", None, {"writer", "management"}),
    ("DELETE", "/kv/?recurse&prefix=zzz/", None, MGMT),
    ("GET", "/kv/?prefix=", None, EVERYONE),  # filtered
    ("POST", "/txn", {"ops": [{"verb": "get", "key": "app/a"}]}, {"reader", "management"}),
    ("POST", "/txn", {"ops": [{"verb": "set", "key": "other/t", "value": "1"}]},
     {"writer", "management"}),
    ("PUT", "/register", {"name": "web", "id": "web-2"}, {"service", "management"}),
    ("PUT", "/register", {"name": "db", "id": "db-2"}, MGMT),
    ("PUT", "/heartbeat/web", None, {"service", "management"}),
    ("PUT", "/health/check/web-ttl", {"status": "passing"}, {"service", "management"}),
    ("GET", "/services", None, EVERYONE),  # filtered
    ("GET", "/services/web", None, {"service", "management"}),
    ("GET", "/health/checks", None, EVERYONE),  # filtered
    ("GET", "/health/service/web", None, {"service", "management"}),
    ("GET", "/health", None, OPS),
    ("GET", "/health/live", None, EVERYONE | {"unknown"}),
    ("GET", "/health/ready", None, EVERYONE | {"unknown"}),
    ("GET", "/metrics", None, OPS),
    ("GET", "/cluster/status", None, OPS),
    ("GET", "/cluster/peers", None, OPS),
    ("POST", "/cluster/snapshot", None, OPS),
    ("POST", "/cluster/join", {"node_id": "n9", "address": "127.0.0.1:1"}, OPS),
    ("POST", "/cluster/bootstrap", None, OPS),
    ("DELETE", "/cluster/leave/n9", None, OPS),
    ("GET", "/export", None, OPS),
    ("POST", "/import", {"version": 1, "kv": [], "services": []}, OPS),
    ("GET", "/acl/policies", None, OPS),
    ("POST", "/acl/policy", {"name": "made-by-test"}, OPS),
    ("GET", "/acl/tokens", None, OPS),
    ("GET", "/acl/token/self", None, EVERYONE),
    ("GET", "/v1/kv/app/a", None, {"reader", "management"}),
    ("PUT", "/v1/kv/other/v1", "x", {"writer", "management"}),
    ("GET", "/v1/catalog/services", None, EVERYONE),  # filtered
    ("GET", "/v1/health/service/web", None, EVERYONE),  # filtered
    ("GET", "/v1/agent/self", None, OPS),
    ("GET", "/v1/status/leader", None, OPS),
    ("GET", "/ui/", None, EVERYONE | {"unknown"}),
    ("GET", "/ui/api/cluster", None, OPS),
    ("GET", "/no/such/endpoint", None, EVERYONE),  # a 404 for whoever is known
]


async def test_every_endpoint_answers_each_token_as_its_policies_say(secured: Secured) -> None:
    failures = []
    for method, path, body, allowed in MATRIX:
        for who in sorted(EVERYONE | {"unknown"}):
            resp = await secured.call(who, method, path, body)
            text = await resp.text()
            assert resp.status != 500, f"{who} {method} {path}: {text}"
            denied = resp.status == 403
            if denied == (who in allowed):
                failures.append(f"{who} {method} {path}: {resp.status} {text[:120]}")
            if denied and path.startswith("/v1/"):  # Consul's 403: the reason as text
                assert resp.content_type == "text/plain", f"{who} {method} {path}"
                assert text.startswith(("ACL not found", "Permission denied")), text
            elif denied:
                assert resp.content_type == "application/json"
                body_json = await resp.json()
                assert body_json["error"] == "permission denied"
                assert "ACL not found" in body_json["message"] or (
                    "lacks" in body_json["message"]
                )
                for secret in secured.tokens.values():
                    assert secret is None or secret not in text
    assert not failures, "\n".join(failures)


async def test_listings_show_only_what_the_token_may_read(secured: Secured) -> None:
    async def keys(who: str) -> list[str]:
        return [e["key"] for e in await secured.ok(who, "GET", "/kv/?prefix=")]

    assert await keys("anonymous") == []
    assert await keys("reader") == ["app/a"]
    assert await keys("writer") == ["other/b"]
    assert await keys("management") == ["app/a", "other/b", "secret/c"]
    assert await secured.ok("reader", "GET", "/kv/?prefix=&keys") == ["app/a"]
    names = {s["name"] for s in await secured.ok("service", "GET", "/services")}
    assert names == {"web"}
    assert {c["service_id"] for c in await secured.ok("service", "GET", "/health/checks")} == {
        "web"}
    assert set(await secured.ok("service", "GET", "/v1/catalog/services")) == {"web"}
    assert await secured.ok("reader", "GET", "/v1/health/service/web") == []
    export = await secured.ok("management", "GET", "/export")
    assert len(export["kv"]) == 3
    # A token with operator:write but no key rule exports no key.
    exported = await secured.ok("operator", "GET", "/export")
    assert exported["kv"] == [] and exported["services"] == []


async def test_a_blocking_listing_wakes_on_a_change_and_shows_only_what_is_readable(
    secured: Secured,
) -> None:
    first = await secured.call("reader", "GET", "/kv/?prefix=")
    index = first.headers["X-Konsul-Index"]
    waiting = asyncio.ensure_future(
        secured.call("reader", "GET", f"/kv/?prefix=&index={index}&wait=5s")
    )
    await asyncio.sleep(0.05)
    await secured.ok("management", "PUT", "/kv/app/new", {"value": "1"})
    answer = await waiting
    assert [e["key"] for e in await answer.json()] == ["app/a", "app/new"]


@pytest.mark.parametrize(
    "carrier",
    [
        lambda t: ({"X-Konsul-Token": t}, ""),
        lambda t: ({"X-Consul-Token": t}, ""),
        lambda t: ({"Authorization": f"Bearer {t}"}, ""),
        lambda t: ({}, f"?token={t}"),
    ],
    ids=["x-konsul-token", "x-consul-token", "bearer", "query"],
)
async def test_each_carrier_brings_the_token(secured: Secured, carrier: Any) -> None:
    headers, query = carrier(secured.tokens["reader"])
    resp = await secured.client.get(f"/kv/app/a{query}", headers=headers)
    assert resp.status == 200, await resp.text()


async def test_malformed_or_conflicting_tokens_are_400_and_unknown_ones_403(
    secured: Secured,
) -> None:
    reader = secured.tokens["reader"]
    assert reader is not None
    for headers in (
        {"X-Konsul-Token": reader, "X-Consul-Token": MANAGEMENT},
        {"Authorization": f"Basic {reader}"},
        {"Authorization": "Bearer"},
        {"X-Konsul-Token": "a" * 300},
        {"X-Konsul-Token": "has\ttab"},
    ):
        resp = await secured.client.get("/kv/app/a", headers=headers)
        assert resp.status == 400, (headers, await resp.text())
    resp = await secured.client.get(f"/kv/app/a?token={MANAGEMENT}",
                                    headers={"X-Konsul-Token": reader})
    assert resp.status == 400
    resp = await secured.client.get("/kv/app/a", headers={"X-Konsul-Token": UNKNOWN})
    assert resp.status == 403 and "ACL not found" in (await resp.json())["message"]


async def test_no_secret_in_logs_metrics_or_errors(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for who in ("reader", "unknown", "management"):
        for method, path, body, _ in MATRIX[:12]:
            await secured.call(who, method, path, body)
    text = await (await secured.call("management", "GET", "/metrics")).text()
    logged = caplog.text
    for secret in (MANAGEMENT, UNKNOWN, secured.tokens["reader"]):
        assert secret is not None
        assert secret not in text and secret not in logged
        assert secret not in str(secured.node.store.snapshot())


async def test_the_acl_api_manages_policies_and_tokens(secured: Secured) -> None:
    policy = await secured.ok("management", "POST", "/acl/policy", {
        "name": "svc-read", "description": "read services", "rules": {"service_prefix":
                                                                      {"": "read"}}})
    assert (await secured.ok("management", "GET", "/acl/policy/svc-read"))["id"] == policy["id"]
    made = await secured.ok("management", "POST", "/acl/token",
                            {"description": "app", "policies": [{"id": policy["id"]}]})
    secret, accessor = made["secret_id"], made["accessor_id"]
    secured.tokens["app"] = secret
    assert [s["name"] for s in await secured.ok("app", "GET", "/services")] == ["db", "web"]
    # The secret is shown once: never by a read, a listing or "self".
    for path in ("/acl/tokens", f"/acl/token/{accessor}"):
        assert secret not in await (await secured.call("management", "GET", path)).text()
    me = await secured.ok("app", "GET", "/acl/token/self")
    assert me["accessor_id"] == accessor and "secret_id" not in me
    # Narrow the policy: the token follows at once.
    await secured.ok("management", "PUT", f"/acl/policy/{policy['id']}",
                     {"rules": {"service_prefix": {"db": "read"}}})
    assert [s["name"] for s in await secured.ok("app", "GET", "/services")] == ["db"]
    # Deleting the policy leaves the token with nothing; deleting the token makes it unknown.
    await secured.ok("management", "DELETE", f"/acl/policy/{policy['id']}")
    assert (await secured.ok("management", "GET", f"/acl/token/{accessor}"))["policies"] == []
    await secured.ok("management", "DELETE", f"/acl/token/{accessor}")
    assert (await secured.call("app", "GET", "/services")).status == 403
    # Built-ins stay.
    for method, path in (("DELETE", "/acl/policy/global-management"),
                         ("DELETE", f"/acl/token/{ANONYMOUS_TOKEN_ID}")):
        assert (await secured.call("management", method, path)).status == 409
    # The anonymous token gets policies like any other.
    await secured.ok("management", "PUT", f"/acl/token/{ANONYMOUS_TOKEN_ID}",
                     {"policies": [{"name": "app-read"}]})
    assert (await secured.ok("anonymous", "GET", "/kv/app/a"))["value"] == "app/a"


async def test_bootstrap_works_once_per_cluster(tmp_path: Path, aiohttp_client: Any) -> None:
    node = Node(settings_for(tmp_path, KONSUL_ACL_ENABLED="true"))
    await node.start()
    try:
        await wait_until(node.is_ready)
        client = await aiohttp_client(KonsulTestServer(create_app(node)))
        assert (await client.get("/kv/?prefix=")).status == 200  # anonymous: an empty listing
        assert (await client.put("/kv/a", json={"value": "1"})).status == 403
        first = await client.post("/acl/bootstrap")
        assert first.status == 200
        secret = (await first.json())["secret_id"]
        again = await client.post("/acl/bootstrap")
        assert again.status == 409
        assert secret not in await again.text()
        resp = await client.put("/kv/a", json={"value": "1"}, headers={"X-Konsul-Token": secret})
        assert resp.status == 200
        # The state survives a snapshot: a restored replica knows the token and the bootstrap.
        copy = StateMachine()
        copy.restore(node.store.snapshot())
        assert copy.acl.bootstrapped == node.store.acl.bootstrapped
        assert [t.accessor_id for t in copy.acl.all_tokens()] == [
            t.accessor_id for t in node.store.acl.all_tokens()]
    finally:
        await node.stop()


async def test_acl_endpoints_refuse_while_acls_are_off(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    node = Node(settings_for(tmp_path))
    await node.start()
    try:
        client = await aiohttp_client(KonsulTestServer(create_app(node)))
        resp = await client.post("/acl/bootstrap")
        assert resp.status == 400 and "not enabled" in (await resp.json())["message"]
    finally:
        await node.stop()


# ------------------------------------------------------------------------------ generated input

# What an HTTP client can put in a header at all (aiohttp refuses DEL and C1 controls).
header_tokens = st.text(
    st.characters(min_codepoint=33, max_codepoint=255, exclude_categories=("Cc",)),
    max_size=300,
)
any_tokens = st.text(max_size=300)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=header_tokens, query=any_tokens)
async def test_generated_tokens_never_cause_a_500(
    secured: Secured, header: str, query: str
) -> None:
    for headers, params in (({"X-Konsul-Token": header}, {}), ({}, {"token": query}),
                            ({"Authorization": f"Bearer {header}"}, {})):
        resp = await secured.client.get("/kv/app/a", headers=headers, params=params)
        assert resp.status in (200, 400, 403), await resp.text()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["read", "write", "deny", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["key_prefix", "service_prefix", "operator", "app/", "", "x"]) | st.text(
            max_size=4), inner, max_size=3),
    max_leaves=8,
)


levels = st.sampled_from(["read", "write", "deny"])
prefix_rules = st.dictionaries(st.text(max_size=6), levels, max_size=4)
well_formed_rules = st.fixed_dictionaries({}, optional={
    "key_prefix": prefix_rules, "service_prefix": prefix_rules, "operator": levels,
})


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=well_formed_rules | json_values, name=st.text(max_size=10))
async def test_generated_rules_are_taken_or_refused_never_a_500(
    secured: Secured, rules: Any, name: str
) -> None:
    resp = await secured.call("management", "POST", "/acl/policy",
                              {"name": f"gen-{abs(hash(name))}", "rules": rules})
    assert resp.status in (200, 400, 409), await resp.text()
    if resp.status != 200:
        return
    policy = await resp.json()
    made = await secured.ok("management", "POST", "/acl/token",
                            {"policies": [{"id": policy["id"]}]})
    secured.tokens["generated"] = made["secret_id"]
    for method, path, body, _ in MATRIX[:20]:
        answer = await secured.call("generated", method, path, body)
        assert answer.status != 500, await answer.text()
    await secured.ok("management", "DELETE", f"/acl/policy/{policy['id']}")


async def test_konsulctl_acl_commands(secured: Secured, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    base = str(secured.client.make_url("")).rstrip("/")

    async def ctl(*argv: str, token: str = MANAGEMENT) -> tuple[int, str]:
        code = await asyncio.to_thread(
            cli.main, ["--addr", base, "--token", token, "--json", *argv]
        )
        out, err = capsys.readouterr()
        return code, out + err

    code, out = await ctl("acl", "policy", "create", "--name", "cli-read",
                          "--rules", '{"key_prefix": {"app/": "read"}}')
    assert code == 0, out
    code, out = await ctl("acl", "token", "create", "--policy", "cli-read",
                          "--description", "from the CLI")
    assert code == 0, out
    made = json.loads(out)
    code, out = await ctl("acl", "token", "read", "self", token=made["secret_id"])
    assert code == 0 and json.loads(out)["accessor_id"] == made["accessor_id"], out
    code, out = await ctl("kv", "get", "app/a", token=made["secret_id"])
    assert code == 0 and json.loads(out)["value"] == "app/a", out
    code, out = await ctl("kv", "put", "app/a", "no", token=made["secret_id"])
    assert code == 1 and "403 permission denied" in out and made["secret_id"] not in out
    code, out = await ctl("acl", "token", "list")
    assert code == 0 and made["secret_id"] not in out
    code, out = await ctl("acl", "policy", "create", "--name", "bad", "--rules", "[1]")
    assert code == 2 and "JSON object" in out
    code, out = await ctl("acl", "bootstrap")  # the initial management token was the bootstrap
    assert code == 1 and "409" in out
    code, out = await ctl("acl", "token", "delete", made["accessor_id"])
    assert code == 0, out


async def _follower_of(secured: Secured, tmp_path: Path, aiohttp_client: Any,
                       **env: str) -> tuple[Node, Any]:
    """A second node that takes every write for the fixture's node's (its "leader")."""
    server = secured.client.server
    leader = Member("leader", "127.0.0.1:7000", True, f"{server.host}:{server.port}")
    follower = Node(settings_for(
        tmp_path / "follower", KONSUL_ACL_ENABLED="true",
        KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN=MANAGEMENT, **env,
    ))
    await follower.start()
    await wait_until(lambda: bool(follower.store.acl.bootstrapped))

    @web.middleware
    async def as_follower(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET":
            raise NotLeader(leader)
        return await handler(request)

    app = create_app(follower)
    app.middlewares.append(as_follower)
    return follower, await aiohttp_client(app)


async def test_redirects_drop_the_token_and_forwarded_writes_keep_it(
    secured: Secured, tmp_path: Path, aiohttp_client: Any
) -> None:
    follower, front = await _follower_of(secured, tmp_path, aiohttp_client)
    try:
        resp = await front.put(f"/kv/app/r?cas=0&token={MANAGEMENT}", json={"value": "1"},
                               allow_redirects=False)
        assert resp.status == 307
        assert MANAGEMENT not in resp.headers["Location"] + await resp.text()
        assert resp.headers["Location"].endswith("/kv/app/r?cas=0")
    finally:
        await follower.stop()
    follower, front = await _follower_of(secured, tmp_path / "2", aiohttp_client,
                                         KONSUL_FORWARD_WRITES="true")
    try:
        resp = await front.put("/kv/app/fwd", json={"value": "via"},
                               headers={"Authorization": f"Bearer {MANAGEMENT}"})
        assert resp.status == 200, await resp.text()
        assert (await secured.ok("management", "GET", "/kv/app/fwd"))["value"] == "via"
        resp = await front.put("/kv/app/fwd", json={"value": "x"},
                               headers={"X-Konsul-Token": secured.tokens["reader"] or ""})
        assert resp.status == 403  # a token the follower does not know stops there
    finally:
        await follower.stop()


async def test_a_nodes_initial_management_token_works_before_the_cluster_holds_it(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """A new clustered node has no ACL state until a leader writes it; whoever bootstraps it
    (the operator) calls with the initial management token, and only with it."""
    secret = tmp_path / "management-token"
    secret.write_text(MANAGEMENT + "\n")
    node = Node(settings_for(
        tmp_path, KONSUL_ACL_ENABLED="true", KONSUL_RAFT_ENABLED="true",
        KONSUL_RAFT_NODE_ID="n1", KONSUL_RAFT_ADVERTISE_ADDR="127.0.0.1:1",
        KONSUL_RAFT_BIND_ADDR=f"127.0.0.1:{free_port()}",
        KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN_FILE=str(secret),
    ))
    await node.start()
    try:
        client = await aiohttp_client(KonsulTestServer(create_app(node)))
        ok = await client.get("/cluster/status", headers={"X-Konsul-Token": MANAGEMENT})
        assert ok.status == 200 and not node.store.acl.tokens.keys() - {ANONYMOUS_TOKEN_ID}
        assert (await client.get("/cluster/status")).status == 403
        other = await client.get("/cluster/status", headers={"X-Konsul-Token": UNKNOWN})
        assert other.status == 403
    finally:
        await node.stop()
