"""A membership change that arrives before the leader may make one waits instead of failing.

Seen under load: a leader leaving hands leadership over and forwards its own removal to its
successor, which had not committed its term's first entry yet and answered 409; the user's
``/cluster/leave`` failed for a reason that would have passed by itself a moment later.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from konsul import config
from konsul.node import Node
from konsul.raft import runtime as raft_runtime
from konsul.raft.core import ProposalRejected
from konsul.raft.types import Member

NEWCOMER = Member("n2", "127.0.0.1:1", False, "127.0.0.1:2")


async def started_with_persistence_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[
    Node, list[tuple[int, int]]
]:
    """A node that leads at once and whose first entry is written but not acknowledged as
    persisted: it leads without having committed an entry of its term."""
    node = Node(config.load({"KONSUL_DATA_DIR": str(tmp_path), "KONSUL_RAFT_NODE_ID": "n1"}))
    held: list[tuple[int, int]] = []
    monkeypatch.setattr(node.core, "persisted", lambda index, term: held.append((index, term)))
    await node.start()
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the first entry was never written"
        await asyncio.sleep(0.01)
    assert node.core.config_change_blocker == "leader has not committed an entry of its term yet"
    return node, held


async def test_a_change_proposed_before_the_leaders_first_commit_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, held = await started_with_persistence_held(tmp_path, monkeypatch)
    try:
        change = asyncio.create_task(
            node.runtime.run_config_change(lambda: node.core.propose_add(NEWCOMER))
        )
        await asyncio.sleep(0.2)
        assert not change.done()  # held, not refused
        monkeypatch.undo()  # persistence is acknowledged again: the first entry commits
        node.core.persisted(*held[-1])
        node.runtime.poke()
        await asyncio.wait_for(change, 5)
        assert node.core.committed_configuration.get("n2") is not None
    finally:
        await node.stop()


async def test_a_change_held_back_for_too_long_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, _ = await started_with_persistence_held(tmp_path, monkeypatch)
    monkeypatch.setattr(raft_runtime, "CONFIG_CHANGE_WAIT", 0.2)
    try:
        started = time.monotonic()
        with pytest.raises(ProposalRejected, match="not committed an entry of its term"):
            await node.runtime.run_config_change(lambda: node.core.propose_add(NEWCOMER))
        assert 0.2 <= time.monotonic() - started < 2
    finally:
        await node.stop()
