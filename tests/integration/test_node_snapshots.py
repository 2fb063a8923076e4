"""Snapshots and compaction on an in-process node: past the threshold a snapshot is taken, the
log is compacted down to TRAILING_LOGS, and a restart rebuilds the identical state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from konsul import config
from konsul.node import Node
from konsul.store import commands
from tests.store.snapshot_view import as_map


def _settings(data_dir: Path, **env: str) -> config.Settings:
    return config.load({"KONSUL_DATA_DIR": str(data_dir), "KONSUL_RAFT_NODE_ID": "n1", **env})


async def _started(settings: config.Settings) -> Node:
    node = Node(settings, wal_segment_bytes=4096)  # small segments, so compaction can drop files
    await node.start()
    assert await node.runtime.wait_applied(node.is_ready, 10), "node did not become ready"
    return node


async def test_snapshot_compaction_and_identical_restart(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, KONSUL_RAFT_SNAPSHOT_THRESHOLD="100", KONSUL_RAFT_TRAILING_LOGS="20"
    )
    node = await _started(settings)
    try:
        for i in range(350):
            await node.propose(commands.kv_set(f"key/{i:04d}", f"value {i}"))
        await node.propose(commands.kv_delete("key/0007"))
        # Snapshots are written in the background: wait for the one past index 300.
        deadline = time.monotonic() + 10
        while node.runtime.last_snapshot is None or node.runtime.last_snapshot.index < 300:
            assert time.monotonic() < deadline, "no snapshot past index 300"
            await asyncio.sleep(0.01)
        last = node.runtime.last_snapshot
        taken = node.metrics.registry.get_sample_value("konsul_raft_snapshot_total")
        assert taken is not None and taken >= 3
        # The core keeps TRAILING_LOGS entries behind the snapshot, the WAL whole segments.
        assert node.core.first_index == last.index - 20 + 1
        assert node.runtime.wal.first_index > 1
        assert node.runtime.wal.first_index <= last.index - 20 + 1
        before = node.store.snapshot()
        applied = node.store.last_applied
    finally:
        await node.stop()

    again = await _started(settings)
    try:
        assert await again.runtime.wait_applied(lambda: again.store.last_applied >= applied, 10)
        # Identical state; only last_applied moved on, by the new term's no-op entry.
        after = as_map(again.store.snapshot())
        expected = as_map(before)
        assert after.pop("last_applied") == expected.pop("last_applied") + 1
        assert after == expected
        assert again.store.kv_get("key/0007") is None
        assert again.store.kv_get("key/0349") is not None
    finally:
        await again.stop()


async def test_manual_snapshot_reports_index_term_and_size(tmp_path: Path) -> None:
    node = await _started(_settings(tmp_path))
    try:
        await node.propose(commands.kv_set("a", "1"))
        info = await node.take_snapshot()
        assert info.index == node.store.last_applied
        assert info.term == node.core.term
        assert info.size_bytes > 0
        assert (await node.take_snapshot()) == info  # nothing new applied: the same snapshot
    finally:
        await node.stop()
