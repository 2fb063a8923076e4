"""A write that cannot commit is answered "outcome unknown" after the propose timeout, and its
bookkeeping goes with it; writes that commit meanwhile are unaffected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from konsul import config
from konsul.errors import Unavailable
from konsul.node import Node
from konsul.store import commands


async def test_a_write_that_cannot_commit_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = config.load({"KONSUL_DATA_DIR": str(tmp_path), "KONSUL_RAFT_NODE_ID": "n1"})
    node = Node(settings)
    await node.start()
    try:
        assert await node.runtime.wait_applied(node.is_ready, 10)
        await node.propose(commands.kv_set("before", "v"))
        runtime = node.runtime
        runtime.propose_timeout = 0.3
        # The leader's own persist is never acknowledged: as alone in its group, it never commits.
        monkeypatch.setattr(node.core, "persisted", lambda index, term: None)
        started = time.monotonic()
        results = await asyncio.gather(
            *(node.propose(commands.kv_set(f"stuck{i}", "v")) for i in range(5)),
            return_exceptions=True,
        )
        waited = time.monotonic() - started
        assert all(isinstance(r, Unavailable) for r in results), results
        assert "outcome is unknown" in str(results[0])
        assert 0.3 <= waited < 2.0
        assert not runtime._proposals and not runtime._by_deadline
    finally:
        await node.stop()
