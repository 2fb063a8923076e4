"""The relays really cut a node off: isolating the leader makes the other two elect a new one,
the old one commits nothing meanwhile, and healing brings it back in step."""

from __future__ import annotations

from pathlib import Path

from tests.linearizability.client import Answer, request, send_write
from tests.linearizability.partition import PartitionableCluster
from tests.processes import wait_until


def test_isolating_the_leader_moves_leadership_and_healing_reunites(tmp_path: Path) -> None:
    cluster = PartitionableCluster(tmp_path, size=3)
    try:
        cluster.start()
        old = cluster.leader()
        assert old.raft_addr.startswith(f"{cluster.prefix}.10")  # peers know the relay address
        # ...and the node's own HTTP address, for redirects and joins.
        code_peers = request("GET", old.http_addr, "/cluster/peers")
        assert code_peers.status == 200
        assert sorted(p["http_address"] for p in code_peers.body["peers"]) == sorted(
            n.http_addr for n in cluster.nodes)
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
            kept = read_answered(node.http_addr, "kept")
            assert kept.status == 200 and kept.body["value"] == "v", (node.node_id, kept)
            cut = read_answered(node.http_addr, "cut")
            assert cut.status == 404, (node.node_id, cut)  # the isolated write never committed
    finally:
        cluster.stop()


def read_answered(host: str, key: str) -> Answer:
    """A consistent read that got an answer about the key (a 503 while a leader settles is not)."""

    def attempt() -> Answer | None:
        answer = request("GET", host, f"/kv/{key}?consistent")
        return answer if answer.status in (200, 404) else None

    found: Answer = wait_until(attempt, 10, f"a consistent read of {key} on {host}")
    return found
