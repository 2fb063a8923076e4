"""The guide's 3-node quick start, step by step, with its env vars and join requests."""

from __future__ import annotations

from pathlib import Path

from tests.cluster_harness import LocalCluster
from tests.processes import http


def test_quick_start_builds_three_voters_with_one_leader(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, size=3)
    try:
        cluster.start()
        status = cluster.nodes[0].status()
        assert status is not None
        for field in (
            "node_id",
            "state",
            "leader_id",
            "leader_addr",
            "peers",
            "commit_index",
            "applied_index",
            "last_index",
            "fsm_pending",
        ):
            assert field in status, field
        assert status["node_id"] == "node1"
        assert status["state"] == "Leader"
        assert status["leader_id"] == "node1"
        assert status["leader_addr"] == cluster.nodes[0].raft_addr
        assert status["peers"] == [
            {"id": n.node_id, "address": n.raft_addr, "voter": True, "http_address": n.http_addr}
            for n in cluster.nodes
        ]
        # Joined nodes started empty; once promoted they vote like the bootstrapped one.
        assert [(n.status() or {}).get("catching_up") for n in cluster.nodes] == [False] * 3
        states = sorted((n.status() or {}).get("state", "?") for n in cluster.nodes)
        assert states == ["Follower", "Follower", "Leader"]
        code, _, leader = http("GET", cluster.nodes[2].url + "/cluster/leader")
        assert code == 200
        assert leader["leader_id"] == "node1"
        assert leader["leader_addr"] == cluster.nodes[0].raft_addr
    finally:
        cluster.stop()
