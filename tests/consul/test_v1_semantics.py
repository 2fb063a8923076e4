"""What every Consul client relies on, over raw HTTP on real processes: read headers, blocking
queries, consistency modes, Consul's text errors, token carriers, and writes on any member."""

from __future__ import annotations

import base64
import threading
import time

import pytest

from tests.cluster_harness import LocalCluster
from tests.consul.conftest import Reply, call, unique
from tests.processes import KonsulProcess

# ------------------------------------------------------------------------------ read headers


def assert_read_headers(reply: Reply) -> None:
    assert reply.index >= 1
    assert reply.headers["X-Consul-KnownLeader"] == "true"
    assert reply.headers["X-Consul-LastContact"].isdigit()


@pytest.mark.parametrize("path", [
    "/v1/kv/{u}", "/v1/kv/{u}?recurse", "/v1/kv/{u}/?keys", "/v1/catalog/services",
    "/v1/catalog/service/{u}", "/v1/catalog/nodes", "/v1/health/service/{u}",
    "/v1/health/checks/{u}", "/v1/health/state/any", "/v1/status/leader",
])
def test_every_read_carries_the_index_and_leader_headers(
    standalone: KonsulProcess, path: str
) -> None:
    reply = call("GET", standalone.url + path.format(u=unique("nothing")))
    assert reply.status in (200, 404)
    assert_read_headers(reply)
    if reply.status == 404:
        assert reply.body == b""  # Consul's empty 404


def test_index_zero_never_blocks(standalone: KonsulProcess) -> None:
    started = time.monotonic()
    reply = call("GET", f"{standalone.url}/v1/kv/{unique('absent')}?index=0&wait=10s")
    assert reply.status == 404 and time.monotonic() - started < 1.0


def test_a_blocked_catalog_query_wakes_on_a_registration(standalone: KonsulProcess) -> None:
    """Prometheus's loop: catalog/services with the last index, woken by a new service."""
    first = call("GET", f"{standalone.url}/v1/catalog/services?stale=&index=0&wait=120000ms")
    name = unique("svc")
    timer = threading.Timer(0.3, lambda: call(
        "PUT", f"{standalone.url}/v1/agent/service/register", {"Name": name, "Port": 1}))
    started = time.monotonic()
    timer.start()
    woken = call("GET", f"{standalone.url}/v1/catalog/services?stale=&index={first.index}"
                        "&wait=120000ms")
    timer.join()
    assert time.monotonic() - started < 1.5
    assert woken.index > first.index and name in woken.json()
    assert woken.headers["X-Consul-Effective-Consistency"] == "stale"


def test_consistency_flags_are_presence_flags_and_exclusive(standalone: KonsulProcess) -> None:
    url = f"{standalone.url}/v1/catalog/services"
    assert call("GET", url + "?consistent=").headers[
        "X-Consul-Effective-Consistency"] == "consistent"
    assert call("GET", url).headers["X-Consul-Effective-Consistency"] == "leader"
    both = call("GET", url + "?stale&consistent")
    assert both.status == 400 and b"conflicting" in both.body
    assert both.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("query, message", [
    ("?index=abc", b"Invalid index"), ("?index=1&wait=forever", b"Invalid wait time"),
])
def test_bad_blocking_parameters_are_a_400(
    standalone: KonsulProcess, query: str, message: bytes
) -> None:
    reply = call("GET", f"{standalone.url}/v1/catalog/services{query}")
    assert (reply.status, reply.body) == (400, message)


# ------------------------------------------------------------------------------------ errors


def test_errors_are_consul_text_on_v1_and_json_on_the_native_api(
    standalone: KonsulProcess,
) -> None:
    cases = [
        ("GET", "/v1/kv/", 400, b"Missing key name"),
        ("GET", "/v1/no/such/endpoint", 404,
         b"Invalid URL path: not a recognized HTTP API endpoint"),
        ("POST", "/v1/kv/x", 405, b"method POST not allowed"),
        ("GET", "/v1/health/state/sick", 400, b"Invalid check state"),
        ("PUT", "/v1/kv/x?acquire=abc", 400, None),
        ("DELETE", "/v1/kv/x?recurse&cas=1", 400, None),
        ("GET", "/v1/health/service/x?filter=Service.Port==80", 400, None),
        ("GET", "/v1/agent/services?filter=Service==x", 400, None),
    ]
    for method, path, status, body in cases:
        reply = call(method, standalone.url + path, b"" if method != "GET" else None)
        assert reply.status == status, (path, reply.status, reply.body)
        assert reply.headers["Content-Type"].startswith("text/plain"), path
        if body is not None:
            assert reply.body == body, path
    native = call("DELETE", standalone.url + "/kv/")
    assert native.status == 400 and native.json()["error"] == "bad request"


def test_a_value_over_512_kib_is_a_413(standalone: KonsulProcess) -> None:
    reply = call("PUT", f"{standalone.url}/v1/kv/{unique('big')}", b"x" * (512 * 1024 + 1))
    assert reply.status == 413 and b"too large" in reply.body
    fits = call("PUT", f"{standalone.url}/v1/kv/{unique('big')}", b"x" * (512 * 1024))
    assert fits.body == b"true"


def test_txn_limits_and_refusals(standalone: KonsulProcess) -> None:
    op = {"KV": {"Verb": "set", "Key": unique("t"), "Value": base64.b64encode(b"v").decode()}}
    assert call("PUT", f"{standalone.url}/v1/txn", [op] * 65).status == 413
    tree = [{"KV": {"Verb": "delete-tree", "Key": "x"}}]
    assert call("PUT", f"{standalone.url}/v1/txn", tree).status == 400
    node_op = [{"Node": {"Verb": "get", "Node": {"Node": "n"}}}]
    assert call("PUT", f"{standalone.url}/v1/txn", node_op).status == 400


# ------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize("carrier", ["query", "X-Consul-Token", "Bearer", "X-Konsul-Token"])
def test_every_token_carrier_is_accepted(standalone: KonsulProcess, carrier: str) -> None:
    """ACLs are not enabled on this node: like Consul with ACLs off, tokens are ignored."""
    key = unique("token")
    query = "?token=secret" if carrier == "query" else ""
    headers = {
        "X-Consul-Token": {"X-Consul-Token": "secret"},
        "Bearer": {"Authorization": "Bearer secret"},
        "X-Konsul-Token": {"X-Konsul-Token": "secret"},
    }.get(carrier, {})
    put = call("PUT", f"{standalone.url}/v1/kv/{key}{query}", b"v", headers)
    assert (put.status, put.body) == (200, b"true")
    assert call("GET", f"{standalone.url}/v1/kv/{key}{query}", headers=headers).status == 200


# ---------------------------------------------------------------------------- any member


def test_writes_on_a_follower_are_forwarded_never_redirected(cluster: LocalCluster) -> None:
    follower = cluster.followers()[0]
    key = unique("fwd")
    put = call("PUT", f"{follower.url}/v1/kv/{key}?flags=9", b"forwarded")
    assert (put.status, put.body) == (200, b"true")
    # The default mode on a follower is the leader's view: the write is there at once.
    got = call("GET", f"{follower.url}/v1/kv/{key}")
    assert got.status == 200 and got.headers["X-Consul-Effective-Consistency"] == "leader"
    assert base64.b64decode(got.json()[0]["Value"]) == b"forwarded"
    assert got.json()[0]["Flags"] == 9
    assert call("PUT", f"{follower.url}/v1/kv/{key}?cas=0", b"again").body == b"false"
    register = call("PUT", f"{follower.url}/v1/agent/service/register",
                    {"name": key, "port": 80})
    assert register.status == 200
    entry = call("GET", f"{follower.url}/v1/catalog/service/{key}").json()[0]
    # No address given: the caller's own, as the follower saw it (not the follower's).
    assert entry["ServiceAddress"] == "127.0.0.1"
    leader = cluster.leader()
    consistent = call("GET", f"{leader.url}/v1/kv/{key}?consistent")
    assert consistent.json()[0]["ModifyIndex"] == got.json()[0]["ModifyIndex"]


def test_every_member_shows_the_same_nodes_and_leader(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    views = [call("GET", f"{n.url}/v1/catalog/nodes").json() for n in cluster.nodes]
    assert all(v == views[0] for v in views)
    assert [n["Node"] for n in views[0]] == ["node1", "node2", "node3"]
    assert {n["Address"] for n in views[0]} == {n.host for n in cluster.nodes}
    members = call("GET", f"{cluster.nodes[1].url}/v1/agent/members").json()
    assert [(m["Name"], m["Status"], m["Tags"]["role"]) for m in members] == [
        (f"node{i}", 1, "consul") for i in (1, 2, 3)]
    for node in cluster.nodes:
        assert call("GET", f"{node.url}/v1/status/leader").json() == leader.raft_addr
        peers = call("GET", f"{node.url}/v1/status/peers").json()
        assert sorted(peers) == sorted(n.raft_addr for n in cluster.nodes)
        assert call("GET", f"{node.url}/v1/agent/self").json()["Config"]["NodeName"] == (
            node.node_id)
