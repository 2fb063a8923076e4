"""Ready means caught up: a member that comes back after missing writes answers ready only once
it has applied (nearly) everything the leader had committed, not as soon as it has applied what
its own log holds (issue #16: /health/ready turned 200 seconds before the follower caught up)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from konsul.node import READY_MAX_LAG
from konsul.store import commands
from tests.inprocess import InProcessCluster, until


async def test_a_member_back_from_an_absence_is_ready_only_once_caught_up(tmp_path: Path) -> None:
    cluster = await InProcessCluster.start(tmp_path, 3)
    try:
        leader = cluster.leader()
        behind = next(n for n in cluster.running() if n is not leader).node_id
        await cluster.stop_node(behind)
        value = b"v" * 4096
        for i in range(40):  # 40 x 16 = 640 entries missed, ten times the allowed lag
            await asyncio.gather(*(
                leader.propose(commands.kv_set(f"k{i}/{j}", value, 0, None)) for j in range(16)
            ))
        node = await cluster.restart_node(behind)
        reasons: set[str] = set()
        deadline = time.monotonic() + 30
        while not node.is_ready():
            reasons.add(node.not_ready_reason() or "")
            assert time.monotonic() < deadline, f"never ready: {reasons}"
            await asyncio.sleep(0)
        # the leader's real commit index, read in the same instant as the member's state
        assert node.store.last_applied + READY_MAX_LAG >= leader.core.commit_index
        assert any("behind the leader's commit index" in r for r in reasons), reasons
        status = node.status()
        assert status.ready and status.lag <= READY_MAX_LAG
        assert status.leader_commit_index >= leader.core.commit_index - READY_MAX_LAG
        await until(cluster.converged, 10, "the member to catch up completely")
    finally:
        await cluster.close()


async def test_a_member_sent_a_snapshot_is_not_ready_before_the_leader_says_its_commit(
    tmp_path: Path,
) -> None:
    # The leader compacts its log past the absent member, which is sent a snapshot on its
    # return. A snapshot says nothing of the leader's commit index: once installed, the member
    # held everything it knew of, and said ready while ~200 entries behind until the next append.
    # (Nor may what the leader sent it while it was down tell it: it once said ready after
    # applying a probe queued for it a second earlier, ~450 entries behind and never sent a
    # snapshot; the transport no longer delivers those.)
    cluster = await InProcessCluster.start(
        tmp_path, 3, KONSUL_RAFT_SNAPSHOT_THRESHOLD="300", KONSUL_RAFT_TRAILING_LOGS="10")
    try:
        leader = cluster.leader()
        behind = next(n for n in cluster.running() if n is not leader).node_id
        missed_from = cluster.nodes[behind].core.last_index + 1
        await cluster.stop_node(behind)
        for i in range(32):  # 512 entries: one snapshot at ~300, ~200 entries after it
            await asyncio.gather(*(
                leader.propose(commands.kv_set(f"k{i}/{j}", b"v", 0, None)) for j in range(16)
            ))
        await until(lambda: leader.core.first_index > missed_from, 10,
                    "the leader to compact its log past the absent member")
        node = await cluster.restart_node(behind)
        deadline = time.monotonic() + 30
        while not node.is_ready():
            assert time.monotonic() < deadline, node.not_ready_reason()
            await asyncio.sleep(0)
        assert node.runtime.last_snapshot is not None  # (it was sent one)
        assert node.store.last_applied + READY_MAX_LAG >= leader.core.commit_index
    finally:
        await cluster.close()
