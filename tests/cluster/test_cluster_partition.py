"""The leader cut off from its followers by a real network partition (network namespaces and
nftables, root only; see tests/cluster/netns.py for the safety rules).

The old leader must step down within about the leader lease and refuse writes; the majority
elects a new leader and keeps accepting writes; after healing, the old leader catches up without
disturbing the new one (its pre-votes move no term), and no acknowledged write is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Figure
from tests.cluster.netns import NetnsLab, make_cluster, unavailable_reason
from tests.cluster_harness import ClusterNode, WriteLoad, assert_no_acked_write_lost
from tests.processes import wait_until

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    lab = NetnsLab()
    try:
        yield lab.setup([1, 2, 3])
    finally:
        lab.teardown()


def test_isolated_leader_steps_down_majority_continues_and_old_leader_rejoins_quietly(
    tmp_path: Path, lab: NetnsLab, figure: Figure
) -> None:
    cluster = make_cluster(tmp_path, lab)
    try:
        cluster.start()
        old = cluster.leader()
        majority = [n for n in cluster.nodes if n is not old]
        number = cluster.nodes.index(old) + 1
        with WriteLoad(
            lambda: [n.url for n in cluster.nodes], writers=2, prefix="part/", http_fn=lab.http
        ) as load:
            load.wait_acks(50)
            lab.isolate(number)
            cut = time.monotonic()  # the rules are in force once nft returns

            def health(node: ClusterNode) -> dict[str, object]:
                code, _, body = lab.http("GET", node.url + "/health", timeout=2)
                assert code == 200
                return dict(body)

            wait_until(
                lambda: health(old)["cluster"]["state"] != "Leader",  # type: ignore[index]
                5, "the isolated leader to step down", interval=0.01,
            )
            stepped_down = time.monotonic() - cut

            def new_leader() -> ClusterNode | None:
                for n in majority:
                    status = n.status() or {}
                    if status.get("state") == "Leader":
                        return n
                return None

            new = wait_until(new_leader, 10, "the majority to elect a leader", interval=0.01)
            elected = time.monotonic() - cut
            first_write = load.first_ack_after(cut)

            # The isolated node: not a leader, no leader known, not ready, writes refused.
            body = health(old)
            assert body["status"] == "degraded" and body["cluster"]["leader"] is None  # type: ignore[index]
            code, headers, answer = lab.http("GET", old.url + "/health/ready")
            assert code == 503 and headers.get("Retry-After") == "1"
            code, _, answer = lab.http("PUT", old.url + "/kv/part/isolated", {"value": "no"})
            assert code == 503 and answer["error"] == "no leader", (code, answer)
            code, _, _ = lab.http("GET", old.url + "/kv/part/isolated?consistent")
            assert code == 503
            # ... while the majority is healthy and keeps accepting writes.
            for n in majority:
                assert health(n)["cluster"] == {  # type: ignore[comparison-overlap]
                    "enabled": True,
                    "state": "Leader" if n is new else "Follower",
                    "leader": new.node_id,
                }
                # Ready once it has applied what the new leader committed (a moment at most).
                wait_until(
                    lambda n=n: lab.http("GET", n.url + "/health/ready")[0] == 200,
                    2, f"{n.node_id} to be ready",
                )
            load.wait_acks(len(load.acks) + 100)
            term = (new.status() or {})["term"]

            # Long enough for the isolated node to pre-vote many times, and for the kernel's
            # retransmissions on the stuck connections to back off past 6 s: without a bound on
            # unacknowledged data (TCP_USER_TIMEOUT in the transport) the healed node then waited
            # 12-14 s for the next retransmission before it heard from the new leader.
            time.sleep(11.0)
            assert (old.status() or {})["term"] < term + 1
            lab.heal(number)
            healed = time.monotonic()
            cluster.wait_converged()
            caught_up = time.monotonic() - healed
            load.wait_acks(len(load.acks) + 50)
        figure("partition_leader_stepdown_s", stepped_down, "s")
        figure("partition_new_leader_elected_s", elected, "s")
        figure("partition_first_write_on_majority_s", first_write, "s")
        figure("partition_heal_catch_up_s", caught_up, "s")
        assert stepped_down < 1.5, f"check-quorum took {stepped_down:.3f}s (lease 500ms)"
        assert caught_up < 5.0, f"the healed node took {caught_up:.3f}s to catch up"
        # A silent leader is replaced after the heartbeat timeout (randomised 1-2 s) plus a
        # pre-vote and a vote round; a split vote adds an election timeout (1-2 s).
        assert first_write < 5.0, f"the majority accepted a write only after {first_write:.3f}s"
        assert cluster.leader() is new, "the healed old leader must not unseat the new one"
        assert {n.node_id: (n.status() or {})["term"] for n in cluster.nodes} == {
            n.node_id: term for n in cluster.nodes
        }, "no term bump from the healed node"
        assert_no_acked_write_lost([n.url for n in cluster.nodes], load, http_fn=lab.http)
    finally:
        cluster.stop()
