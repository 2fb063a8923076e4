"""Membership and catch-up on real processes: scale 3 → 5 → 3 under write load (a removed server
that keeps running must not disturb the rest), and a follower that was down past the leader's
log compaction coming back through InstallSnapshot."""

from __future__ import annotations

import time
from pathlib import Path

from tests.cluster.conftest import Figure
from tests.cluster_harness import (
    ClusterNode,
    LocalCluster,
    WriteLoad,
    assert_no_acked_write_lost,
    kv_snapshot,
)
from tests.processes import http, wait_until


def leader_among(members: list[ClusterNode], timeout: float = 10.0) -> ClusterNode:
    def agreed() -> ClusterNode | None:
        statuses = [m.status() for m in members]
        leaders = {s["leader_id"] for s in statuses if s}
        if len(leaders) != 1 or None in leaders:
            return None
        (leader_id,) = leaders
        return next((m for m in members if m.node_id == leader_id), None)

    found: ClusterNode = wait_until(agreed, timeout, "the members to agree on a leader")
    return found


def terms(members: list[ClusterNode]) -> dict[str, int]:
    return {m.node_id: int((m.status() or {}).get("term", -1)) for m in members}


def test_scale_3_to_5_to_3_under_load_and_removed_servers_cannot_disrupt(
    tmp_path: Path, figure: Figure
) -> None:
    cluster = LocalCluster(tmp_path, size=3)
    try:
        cluster.start()
        members = list(cluster.nodes)
        load = WriteLoad(lambda: [m.url for m in members], writers=2, prefix="scale/").start()
        try:
            load.wait_acks(50)
            started = time.monotonic()
            for _ in range(2):
                node = cluster.add_node()  # joins as a non-voter, promoted once caught up
                members.append(node)
            assert cluster.voters() == ["node1", "node2", "node3", "node4", "node5"]
            figure("scale_up_3_to_5_s", time.monotonic() - started, "s")
            load.wait_acks(len(load.acks) + 50)

            # Down again: remove a new server, then the current leader itself (which hands
            # leadership over first and has its successor remove it).
            started = time.monotonic()
            leader = leader_among(members)
            removed = [next(m for m in members if m.node_id == "node5"), leader]
            for node in removed:
                current = leader_among([m for m in members if m not in removed[:1]])
                code, _, body = http(
                    "DELETE", f"{current.url}/cluster/leave/{node.node_id}", timeout=30
                )
                assert code == 200, (code, body)
                assert body["removed"] == node.node_id
                members.remove(node)
                # Ask a remaining member: a leader that removed itself answers with its own,
                # possibly stale, view of the peers (see docs/clustering.md).
                wait_until(
                    lambda n=node: n.node_id
                    not in [p["id"] for p in (leader_among(members).status() or {})["peers"]],
                    10,
                    f"{node.node_id} to leave the configuration",
                )
            figure("scale_down_5_to_3_s", time.monotonic() - started, "s")
            load.wait_acks(len(load.acks) + 50)
        finally:
            load.stop()
        figure("scale_longest_write_gap_s", load.longest_gap(), "s")

        leader = leader_among(members)
        assert sorted(p["id"] for p in (leader.status() or {})["peers"]) == sorted(
            m.node_id for m in members
        )
        assert all(n.alive() for n in removed), "the removed servers keep running"
        before = terms(members)
        # Longer than a heartbeat plus an election timeout: the removed servers time out, and
        # their pre-votes and votes must not move the members' term or unseat the leader.
        time.sleep(3.0)
        assert terms(members) == before
        assert leader_among(members) is leader
        assert len(set(before.values())) == 1
        assert http("PUT", f"{leader.url}/kv/scale/after", {"value": "ok"})[0] == 200
        assert_no_acked_write_lost([m.url for m in members], load)
    finally:
        cluster.stop()


def test_follower_down_past_compaction_catches_up_by_install_snapshot(
    tmp_path: Path, figure: Figure
) -> None:
    cluster = LocalCluster(
        tmp_path,
        size=3,
        env={"KONSUL_RAFT_SNAPSHOT_THRESHOLD": "50", "KONSUL_RAFT_TRAILING_LOGS": "10"},
    )
    try:
        cluster.start()
        leader = cluster.leader()
        lagging = cluster.followers()[0]
        lagging.kill()
        for n in range(300):
            code, _, _ = http("PUT", f"{leader.url}/kv/snap/{n:04d}", {"value": f"v{n}"})
            assert code == 200
        status = leader.status()
        assert status is not None
        figure("leader_snapshot_index", status["last_snapshot_index"], "")
        assert status["last_snapshot_index"] >= 250, "the leader compacted past the follower"

        restarted = time.monotonic()
        lagging.start()
        cluster.wait_converged()
        figure("install_snapshot_catch_up_s", time.monotonic() - restarted, "s")
        assert "snapshot installed from leader" in lagging.logs()
        caught = lagging.status()
        assert caught is not None and caught["last_snapshot_index"] >= 250

        # Same data from the follower's own replica (a local read, no ReadIndex) as the leader's.
        expected = kv_snapshot(leader.url, "snap/")
        assert len(expected) == 300
        assert kv_snapshot(lagging.url, "snap/", consistent=False) == expected
        # And it keeps replicating normally afterwards.
        assert http("PUT", f"{leader.url}/kv/snap/after", {"value": "x"})[0] == 200
        cluster.wait_converged()
        assert kv_snapshot(lagging.url, "snap/after", consistent=False) == {"snap/after": "x"}
    finally:
        cluster.stop()
