"""konsulctl and the client against a real three-node cluster: reads on a follower (read
headers, ``?consistent``, blocking reads woken by a write on the leader), writes sent to a
follower, and the membership commands (join, peers, transfer-leadership, leave)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from konsul.cli import main
from konsul.client import AsyncClient, Client
from tests.cluster_harness import LocalCluster
from tests.processes import http, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cli-cluster"), size=3)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def ctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_follower_reads_carry_headers_and_consistent_sees_the_last_write(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    for i in range(20):
        code, _, _ = http("PUT", f"{leader.url}/kv/lin/k", {"value": str(i)})
        assert code == 200
        # Linearizable: a read that starts after the write was acknowledged sees it, even on
        # a follower.
        code, headers, body = http("GET", f"{follower.url}/kv/lin/k?consistent")
        assert (code, body["value"]) == (200, str(i))
        assert headers["X-Konsul-Known-Leader"] == "true"
        assert int(headers["X-Konsul-Index"]) == body["modify_index"]
        assert 0 <= int(headers["X-Konsul-Last-Contact"]) < 5000
    code, headers, _ = http("GET", f"{leader.url}/kv/lin/k")
    assert headers["X-Konsul-Last-Contact"] == "0"


def test_blocking_read_on_a_follower_wakes_on_a_write_to_the_leader(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[-1]
    code, _, first = http("PUT", f"{leader.url}/kv/watch/f", {"value": "1"})
    assert code == 200
    wait_until(lambda: http("GET", f"{follower.url}/kv/watch/f")[0] == 200, 10, "replication")
    answer: dict[str, Any] = {}

    def watch() -> None:
        url = f"{follower.url}/kv/watch/f?index={first['modify_index']}&wait=30s"
        answer["result"] = http("GET", url, timeout=40)
        answer["at"] = time.monotonic()

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.3)
    assert "result" not in answer, "the follower must hold the read until the index moves"
    written = time.monotonic()
    code, _, second = http("PUT", f"{leader.url}/kv/watch/f", {"value": "2"})
    assert code == 200
    watcher.join(40)
    code, headers, body = answer["result"]
    assert (code, body["value"]) == (200, "2")
    assert int(headers["X-Konsul-Index"]) == second["modify_index"]
    assert answer["at"] - written < 5


def test_konsulctl_writes_through_a_follower_and_reads_cluster_state(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    rc, out, err = ctl(capsys, "--addr", follower.http_addr, "kv", "put", "cli/f", "via-follower")
    assert rc == 0, err
    rc, out, _ = ctl(capsys, "--addr", leader.http_addr, "kv", "get", "cli/f", "--consistent")
    assert (rc, out) == (0, "via-follower\n")
    rc, out, _ = ctl(capsys, "--addr", follower.http_addr, "--json", "cluster", "status")
    status = json.loads(out)
    assert status["state"] == "Follower" and status["leader_id"] == leader.node_id
    assert status["address"] == follower.raft_addr
    rc, out, _ = ctl(capsys, "--addr", follower.http_addr, "cluster", "leader")
    assert out.split()[:2] == [leader.node_id, leader.raft_addr]
    rc, out, _ = ctl(capsys, "--addr", follower.http_addr, "cluster", "peers")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(r[0] for r in rows) == ["node1", "node2", "node3"]


def test_konsulctl_join_transfer_and_leave(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    newcomer = cluster.make_node(len(cluster.nodes) + 1)
    newcomer.env["KONSUL_RAFT_BOOTSTRAP"] = "false"
    cluster.nodes.append(newcomer)
    newcomer.start()
    follower = cluster.followers()[0]
    rc, out, err = ctl(capsys, "--addr", follower.http_addr, "cluster", "join",
                       newcomer.node_id, newcomer.raft_addr, "--http-address", newcomer.http_addr)
    assert rc == 0, err
    assert out == f"Joined {newcomer.node_id} at {newcomer.raft_addr}\n"

    def promoted() -> bool:
        _, out, _ = ctl(capsys, "--addr", follower.http_addr, "--json", "cluster", "peers")
        peers = {p["id"]: p for p in json.loads(out)["peers"]}
        return newcomer.node_id in peers and peers[newcomer.node_id]["voter"] is True

    wait_until(promoted, 20, "the new node to be promoted to voter")

    old = cluster.leader()
    target = next(n for n in cluster.followers() if n is not newcomer)
    rc, out, err = ctl(capsys, "--addr", newcomer.http_addr, "cluster", "transfer-leadership",
                       target.node_id)
    assert rc == 0, err
    assert out == f"Leadership transferred to {target.node_id}\n"
    assert cluster.leader().node_id == target.node_id != old.node_id

    rc, out, err = ctl(capsys, "--addr", old.http_addr, "cluster", "leave", newcomer.node_id)
    assert rc == 0, err
    assert out == f"Removed {newcomer.node_id}\n"
    rc, out, _ = ctl(capsys, "--addr", old.http_addr, "cluster", "leave", newcomer.node_id)
    assert rc == 1
    rc, _, err = ctl(capsys, "--addr", old.http_addr, "cluster", "leave", "nobody")
    assert rc == 1 and "404 not found" in err
    newcomer.kill()
    cluster.nodes.remove(newcomer)


async def test_async_client_writes_through_a_follower(cluster: LocalCluster) -> None:
    follower = cluster.followers()[0]
    leader = cluster.leader()
    async with AsyncClient(follower.url) as client:
        await client.kv_put("async/f", "x")
        assert leader.url in client.addresses
        assert (await client.kv_get("async/f", consistent=True))["value"] == "x"
    with Client(follower.url) as sync:
        assert sync.kv_get("async/f", consistent=True)["value"] == "x"


def test_client_rides_out_a_leader_crash(cluster: LocalCluster) -> None:
    """Last in the module: SIGKILL the leader under a client that knows every node; the next
    write succeeds on the new leader through the client's retries alone."""
    with Client([n.url for n in cluster.running()]) as client:
        client.kv_put("crash/before", "1")
        leader = cluster.leader()
        leader.kill()
        started = time.monotonic()
        written = client.kv_put("crash/after", "2")
        elapsed = time.monotonic() - started
        assert written["key"] == "crash/after"
        new_leader = cluster.leader()
        assert new_leader is not leader
        assert client.kv_get("crash/after", consistent=True)["value"] == "2"
        assert elapsed < 5, f"the write took {elapsed:.2f}s after the crash"
        print(f"\n[figure] client write after leader SIGKILL: {elapsed:.3f}s")
