"""Backups, restores and recovery on clusters of real processes (docs/backup.md).

One three-node cluster serves the backup and online-restore tests (in this order); the
recovery test wrecks a cluster of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from konsul.backup import file
from konsul.client import Client
from tests.cluster_harness import (
    ClusterNode,
    LocalCluster,
    WriteLoad,
    assert_no_acked_write_lost,
    kv_snapshot,
)
from tests.processes import REPO, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("backup"), size=3).start()
    yield c
    c.stop()


def listing(node: ClusterNode, prefix: str) -> dict[str, tuple[str, int]]:
    code, _, body = node.call("GET", f"/kv/?prefix={prefix}&consistent")
    assert code == 200, body
    return {e["key"]: (e["value"], e["modify_index"]) for e in body}


def exported(node: ClusterNode) -> dict[str, Any]:
    code, _, body = node.call("GET", "/export?stale")
    assert code == 200, body
    return {"kv": body["kv"], "services": body["services"]}


def restore_offline(node: ClusterNode, backup: Path) -> str:
    """``konsul restore FILE`` with the node's own environment (it is not running)."""
    env = {"KONSUL_DATA_DIR": str(node.data_dir), "KONSUL_HOST": node.host,
           "KONSUL_PORT": str(node.port), **node.env}
    done = subprocess.run([sys.executable, "-m", "konsul", "restore", str(backup)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_backup_under_16_writers_holds_exactly_the_writes_up_to_its_index(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    backup = tmp_path / "w16.snap"
    load = WriteLoad(lambda: [n.url for n in cluster.running()], writers=16, prefix="w16/")
    with load:
        load.wait_acks(150)
        asked = time.monotonic()
        acked_before = {a.key for a in load.acks if a.at < asked}
        with Client([cluster.followers()[0].http_addr]) as client:  # served by the leader
            saved = client.snapshot_save(str(backup))
        load.wait_acks(len(load.acks) + 150)  # and the writers go on after it
    index = saved["index"]
    live = listing(cluster.leader(), "w16/")
    expected = {k: v for k, (v, modified) in live.items() if modified <= index}
    assert acked_before <= set(expected), "a write acknowledged before the backup is missing"
    assert len(expected) < len(live), "the writers wrote nothing after the backup's index"

    # Restored into a new cluster: exactly the writes up to the backup's index, nothing after.
    fresh = LocalCluster(tmp_path / "restored", size=1)
    node = fresh.nodes[0]
    node.node_id = node.env["KONSUL_RAFT_NODE_ID"] = "restored"
    node.env["KONSUL_RAFT_BOOTSTRAP"] = "false"
    assert "New cluster" in restore_offline(node, backup)
    try:
        node.start()
        wait_until(lambda: fresh._ready(node), 20, "the restored node to lead")
        restored = listing(node, "w16/")
        assert {k: v for k, (v, _) in restored.items()} == expected
        assert all(modified <= index for _, modified in restored.values())
        status = node.status()
        assert status is not None and status["applied_index"] > index
        old = cluster.leader().status()
        assert old is not None and status["cluster_id"] not in ("", old["cluster_id"])
        # It can never be mistaken for the old cluster: neither joins a member of the other.
        for joiner, target in ((node, cluster.leader()), (cluster.nodes[2], node)):
            code, _, body = target.call("POST", "/cluster/join", {
                "node_id": joiner.node_id, "address": joiner.raft_addr}, timeout=20)
            assert code == 409 and "another cluster" in body["message"], body
        assert cluster.voters() == ["node1", "node2", "node3"]
    finally:
        fresh.stop()


def test_an_online_restore_brings_every_member_to_the_backups_state(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    leader = cluster.leader()
    for i in range(30):
        assert leader.call("PUT", f"/kv/online/{i:02}", {"value": str(i)})[0] == 200
    backup = tmp_path / "online.snap"
    with Client([leader.http_addr]) as client:
        client.snapshot_save(str(backup))
    saved = exported(leader)
    assert leader.call("PUT", "/kv/online/late", {"value": "replaced by the restore"})[0] == 200
    assert leader.call("DELETE", "/kv/online/00")[0] == 200

    load = WriteLoad(lambda: [n.url for n in cluster.running()], writers=4, prefix="during/")
    with load, Client([cluster.followers()[0].http_addr]) as client:  # sent to the leader
        load.wait_acks(20)
        done = client.snapshot_restore(str(backup))
        answered = time.monotonic()
        load.wait_acks(len(load.acks) + 40)
    assert done["source"]["index"] == file.inspect(file.read_file(str(backup))).header.index
    cluster.wait_converged()
    after = [a for a in load.acks if a.sent > answered]
    for node in cluster.running():
        state = exported(node)
        kv = [e for e in state["kv"] if not e["key"].startswith("during/")]
        assert kv == [e for e in saved["kv"] if not e["key"].startswith("during/")], node.node_id
        assert state["services"] == saved["services"]
        stored = kv_snapshot(node.url, "during/")
        assert all(stored.get(a.key) == a.value for a in after), node.node_id
    assert not load.server_errors(), load.outcomes  # (writes during it: 503, then retried)


def test_recovery_from_a_survivor_when_two_volumes_are_lost(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, size=3).start()
    try:
        load = WriteLoad(lambda: [n.url for n in c.running()], writers=4, prefix="dr/")
        with load:
            load.wait_acks(200)
        c.wait_converged()
        survivor = c.nodes[0]
        code, _, body = survivor.call("POST", "/cluster/recover")
        assert code == 409 and "quorum" in body["message"], body
        old = survivor.status()
        for lost in c.nodes[1:]:
            lost.kill()
            shutil.rmtree(lost.data_dir)

        def recovered() -> dict[str, Any] | None:
            code, _, body = survivor.call("POST", "/cluster/recover", timeout=15)
            assert code in (200, 409), body
            return body if code == 200 else None

        done = wait_until(recovered, 20, "the survivor to accept the recovery")
        assert sorted(done["removed"]) == ["node2", "node3"]
        assert old is not None and done["cluster_id"] != old["cluster_id"]
        wait_until(lambda: c._ready(survivor), 10, "the survivor to lead alone")
        for lost in c.nodes[1:]:
            lost.start()
            c.join(lost, via=survivor)
        c.wait_converged()
        assert c.voters() == ["node1", "node2", "node3"]
        assert_no_acked_write_lost([n.url for n in c.nodes], load)
        code, _, body = survivor.call("POST", "/cluster/recover")
        assert code == 409, body  # a quorum again
    finally:
        c.stop()
