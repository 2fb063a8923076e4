"""The relays really cut a node off: isolating the leader makes the other two elect a new one,
the old one commits nothing meanwhile, and healing brings it back in step."""

from __future__ import annotations

from pathlib import Path

from tests.linearizability.client import request, send_write
from tests.linearizability.partition import PartitionableCluster
from tests.processes import wait_until


def test_isolating_the_leader_moves_leadership_and_healing_reunites(tmp_path: Path) -> None:
    cluster = PartitionableCluster(tmp_path, size=3)
    try:
        cluster.start()
        old = cluster.leader()
        assert old.raft_addr.startswith(f"{cluster.prefix}.10")  # peers know the relay address
        others = [n for n in cluster.nodes if n is not old]

        cluster.relays.isolate(old.node_id)

        def new_leader() -> str | None:
            states = {n.node_id: (n.status() or {}).get("state") for n in others}
            leaders = [node_id for node_id, state in states.items() if state == "Leader"]
            return leaders[0] if leaders else None

        elected = wait_until(new_leader, 15, "the majority to elect a new leader")
        assert elected != old.node_id
        # The isolated node cannot commit: a write sent straight to it gets no success.
        answer = request("PUT", old.http_addr, "/kv/cut", {"value": "lost"})
        assert answer.status != 200, answer
        assert cluster.relays.dropped > 0
        # The majority side still works.
        assert send_write("PUT", others[0].http_addr, "/kv/kept", {"value": "v"}).status == 200

        cluster.relays.heal()
        cluster.wait_converged(timeout=20)
        for node in cluster.nodes:
            kept = request("GET", node.http_addr, "/kv/kept?consistent")
            assert kept.status == 200 and kept.body["value"] == "v", (node.node_id, kept)
            cut = request("GET", node.http_addr, "/kv/cut?consistent")
            assert cut.status == 404, (node.node_id, cut)  # the isolated write never committed
    finally:
        cluster.stop()
