"""The cluster seen through its HTTP API on real processes: redirects and forwarded writes,
/cluster/join errors, /health and /health/ready per role, and the guide's konsul_raft_* metrics.

One three-node cluster serves the whole module (the tests only add to it); the last test stops
both followers for a moment and must stay last.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from konsul.client import Client
from tests.cluster.conftest import Figure
from tests.cluster_harness import ClusterNode, LocalCluster, kv_snapshot, metrics_of
from tests.processes import http, wait_until

NOT_LEADER_MESSAGE = "This node is not the leader. Redirect to leader for write operations."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("api-cluster"), size=3)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def peers_of(node: ClusterNode) -> list[dict[str, Any]]:
    code, _, body = http("GET", node.url + "/cluster/peers")
    assert code == 200
    return list(body["peers"])


# ------------------------------------------------------------------ writes on a follower


def test_write_on_follower_is_a_307_with_location_and_documented_body(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    code, headers, body = http("PUT", follower.url + "/kv/redirect/one?cas=0", {"value": "v"})
    assert code == 307
    assert headers["Location"] == f"http://{leader.http_addr}/kv/redirect/one?cas=0"
    assert body == {
        "error": "not leader",
        "message": NOT_LEADER_MESSAGE,
        "leader_addr": leader.raft_addr,
        "leader_id": leader.node_id,
        "leader_http_addr": leader.http_addr,
    }
    # The redirect wrote nothing; following the Location does.
    assert http("GET", leader.url + "/kv/redirect/one?consistent")[0] == 404
    code, _, _ = http("PUT", headers["Location"], {"value": "v"})
    assert code == 200
    # Every write kind redirects, not only KV: a service registration and a cluster operation.
    code, _, body = http("PUT", follower.url + "/register", {"name": "web", "port": 80})
    assert code == 307 and body["leader_id"] == leader.node_id
    code, _, body = http("POST", follower.url + "/cluster/snapshot")
    assert code == 200, "a snapshot is local to each node, not a write"
    code, _, body = http(
        "POST", follower.url + "/cluster/join", {"node_id": "x", "address": "127.0.0.1:1"}
    )
    assert code == 307 and body["leader_addr"] == leader.raft_addr


def test_python_client_follows_the_redirect_and_remembers_the_leader(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    with Client([follower.url]) as client:
        result = client.kv_put("redirect/client", "from-client")
        assert result["key"] == "redirect/client"
        assert client.addresses[-1] == leader.url, "the client learned the leader from the 307"
        # Reads are served by whichever node the client now talks to; consistent means current.
        assert client.kv_get("redirect/client", consistent=True)["value"] == "from-client"
        client.kv_delete("redirect/client")
    assert http("GET", follower.url + "/kv/redirect/client?consistent")[0] == 404


def test_forward_writes_makes_a_follower_proxy_the_write(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[-1]
    follower.stop()
    follower.env["KONSUL_FORWARD_WRITES"] = "true"
    try:
        follower.start()
        cluster.wait_converged()
        code, headers, body = http("PUT", follower.url + "/kv/forwarded/k", {"value": "fw"})
        assert code == 200, (code, body)
        assert "Location" not in headers
        assert body["key"] == "forwarded/k"
        assert kv_snapshot(leader.url, "forwarded/")["forwarded/k"] == "fw"
        # The leader's refusals come back unchanged: a CAS conflict is the leader's 409.
        code, _, body = http("PUT", follower.url + "/kv/forwarded/k?cas=1", {"value": "no"})
        assert code == 409, (code, body)
    finally:
        follower.stop()
        follower.env.pop("KONSUL_FORWARD_WRITES")
        follower.start()
        cluster.wait_converged()


# -------------------------------------------------------------------- reads on followers


def test_consistent_reads_on_followers_see_every_acknowledged_write(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    followers = cluster.followers()
    for n in range(100):
        assert http("PUT", f"{leader.url}/kv/ryw/{n}", {"value": str(n)})[0] == 200
        follower = followers[n % len(followers)]
        code, headers, body = http("GET", f"{follower.url}/kv/ryw/{n}?consistent")
        assert code == 200 and body["value"] == str(n), (n, code, body)
        assert headers["X-Konsul-Known-Leader"] == "true"
        assert int(headers["X-Konsul-Index"]) == body["modify_index"]


def test_blocking_read_on_a_follower_wakes_on_a_write_to_the_leader(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    code, _, first = http("PUT", f"{leader.url}/kv/blocking/k", {"value": "1"})
    assert code == 200
    cluster.wait_converged()
    answers: list[tuple[int, Any, float]] = []

    def block() -> None:
        started = time.monotonic()
        query = f"index={first['modify_index']}&wait=10s"
        code, _, body = http("GET", f"{follower.url}/kv/blocking/k?{query}", timeout=15)
        answers.append((code, body, time.monotonic() - started))

    waiter = threading.Thread(target=block)
    waiter.start()
    time.sleep(0.3)  # let the read block first
    assert http("PUT", f"{leader.url}/kv/blocking/k", {"value": "2"})[0] == 200
    waiter.join(timeout=15)
    ((code, body, took),) = answers
    assert code == 200 and body["value"] == "2"
    assert took < 5, f"the blocking read returned after {took:.3f}s, not on the write"


# ------------------------------------------------------------------------ join errors


def test_join_without_its_fields_is_a_400(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    for body in ({}, {"node_id": "node9"}, {"address": f"{cluster.prefix}.9:7000"}):
        code, _, answer = http("POST", leader.url + "/cluster/join", body)
        assert code == 400, (body, code, answer)
        assert answer["error"] and answer["message"]


def test_join_of_a_known_id_at_another_address_is_a_409(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    before = peers_of(leader)
    code, _, answer = http(
        "POST", leader.url + "/cluster/join", {"node_id": "node2", "address": "127.0.0.1:7999"}
    )
    assert code == 409, answer
    assert "node2" in answer["message"]
    # The same id and address again is idempotent: 200 and nothing changes.
    node2 = cluster.nodes[1]
    code, _, answer = http(
        "POST", leader.url + "/cluster/join", {"node_id": "node2", "address": node2.raft_addr}
    )
    assert code == 200, answer
    assert peers_of(leader) == before


def test_join_of_an_unreachable_address_times_out_with_a_504(
    cluster: LocalCluster, figure: Figure
) -> None:
    """A port that accepts nothing (a listener whose backlog is full drops new SYNs) makes the
    join wait for its reach timeout, then answer 504 and leave the configuration alone. A port
    with nobody listening is refused at once: also a 504, without the wait."""
    leader = cluster.leader()
    before = peers_of(leader)
    host = f"{cluster.prefix}.9"
    refused = f"{host}:7000"
    code, _, answer = http(
        "POST", leader.url + "/cluster/join", {"node_id": "node9", "address": refused}, timeout=30
    )
    assert code == 504, answer
    assert refused in answer["message"] and "unchanged" in answer["message"]

    with socket.socket() as listener:
        # Any free port: 0.0.0.0:<fixed port> may be held by something else on the machine.
        listener.bind((host, 0))
        listener.listen(0)
        silent = f"{host}:{listener.getsockname()[1]}"
        fillers = [socket.socket() for _ in range(3)]
        for s in fillers:  # non-blocking: once the queue is full these connects hang too
            s.setblocking(False)
            s.connect_ex(listener.getsockname())
        try:
            started = time.monotonic()
            code, _, answer = http(
                "POST",
                leader.url + "/cluster/join",
                {"node_id": "node9", "address": silent},
                timeout=30,
            )
            took = time.monotonic() - started
        finally:
            for s in fillers:
                s.close()
    figure("join_unreachable_answer_s", took, "s")
    assert code == 504, answer
    assert answer["error"] and silent in answer["message"]
    assert took < 15
    assert peers_of(leader) == before
    for node in cluster.nodes:
        assert [p["id"] for p in peers_of(node)] == ["node1", "node2", "node3"]


# ------------------------------------------------------------------- health and metrics


def test_health_reports_the_cluster_block_on_leader_and_followers(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    for node in cluster.nodes:
        code, _, body = http("GET", node.url + "/health")
        assert code == 200
        assert body["status"] == "healthy"
        assert body["cluster"] == {
            "enabled": True,
            "state": "Leader" if node is leader else "Follower",
            "leader": leader.node_id,
        }
        assert http("GET", node.url + "/health/ready")[0] == 200
        assert http("GET", node.url + "/health/live")[0] == 200


GAUGES = (
    "konsul_raft_state",
    "konsul_raft_is_leader",
    "konsul_raft_peers_total",
    "konsul_raft_last_index",
    "konsul_raft_commit_index",
    "konsul_raft_applied_index",
)
COUNTERS = (
    "konsul_raft_apply_total",
    "konsul_raft_apply_errors_total",
    "konsul_raft_leader_changes_total",
    "konsul_raft_snapshot_total",
)


def test_every_raft_metric_of_the_guide_is_live_on_every_node(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    for n in range(5):
        assert http("PUT", f"{leader.url}/kv/metrics/{n}", {"value": str(n)})[0] == 200
    cluster.wait_converged()
    for node in cluster.nodes:
        assert http("POST", node.url + "/cluster/snapshot")[0] == 200

    def consistent(node: ClusterNode) -> tuple[dict[str, float], dict[str, Any]] | None:
        # Nothing is being written: the gauges must equal what /cluster/status says.
        values, _ = metrics_of(node.url)
        status = node.status()
        assert status is not None
        same = all(
            values[f"konsul_raft_{name}"] == status[name]
            for name in ("last_index", "commit_index", "applied_index")
        )
        return (values, status) if same else None

    for node in cluster.nodes:
        values, status = wait_until(lambda n=node: consistent(n), 5, f"{node.node_id} metrics")
        _, types = metrics_of(node.url)
        for name in GAUGES:
            assert types[name] == "gauge", name
        for name in COUNTERS:
            # The exposition names a counter's TYPE with or without _total, by client version.
            kind = types.get(name) or types.get(name.removesuffix("_total"))
            assert kind == "counter", name
            assert name in values, name
        assert types["konsul_raft_apply_duration_seconds"] == "histogram"
        assert values["konsul_raft_apply_duration_seconds_count"] >= 5
        is_leader = status["state"] == "Leader"
        assert values["konsul_raft_is_leader"] == (1.0 if is_leader else 0.0)
        assert values["konsul_raft_state"] == (2.0 if is_leader else 0.0)
        assert (node is leader) == is_leader
        assert values["konsul_raft_peers_total"] == len(status["peers"]) == 3
        assert values["konsul_raft_apply_total"] >= 5
        assert values["konsul_raft_apply_errors_total"] == 0
        assert values["konsul_raft_leader_changes_total"] >= 1
        assert values["konsul_raft_snapshot_total"] >= 1
        assert status["last_snapshot_index"] > 0


def test_a_leader_cut_off_from_its_followers_stops_being_ready(
    cluster: LocalCluster, figure: Figure
) -> None:
    """Both followers frozen (SIGSTOP): the leader loses its quorum, steps down within about the
    leader lease, reports no leader in /health, fails /health/ready and refuses writes."""
    leader = cluster.leader()
    followers = cluster.followers()
    for f in followers:
        assert f.proc is not None
        f.proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:

        def stepped_down() -> bool:
            code, _, body = http("GET", leader.url + "/health", timeout=2)
            return code == 200 and body["cluster"]["state"] != "Leader"

        wait_until(stepped_down, 5, "the leader to step down", interval=0.01)
        took = time.monotonic() - stopped
        figure("stepdown_without_quorum_s", took, "s")
        assert took < 1.5, "check-quorum should act within about the 500ms leader lease"
        _, _, body = http("GET", leader.url + "/health")
        assert body["status"] == "degraded"
        assert body["cluster"]["leader"] is None
        code, headers, body = http("GET", leader.url + "/health/ready")
        assert code == 503 and headers.get("Retry-After") == "1"
        code, headers, body = http("PUT", leader.url + "/kv/cutoff", {"value": "no"})
        assert code == 503 and body["error"] == "no leader"
        code, _, _ = http("GET", leader.url + "/kv/cutoff?consistent")
        assert code == 503
    finally:
        for f in followers:
            assert f.proc is not None
            f.proc.send_signal(signal.SIGCONT)
    cluster.wait_converged()
    for node in cluster.nodes:
        assert http("GET", node.url + "/health/ready")[0] == 200
