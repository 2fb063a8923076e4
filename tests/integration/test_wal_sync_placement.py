"""Where a node runs its WAL syncs: on the event loop while the disk syncs fast, in a worker
thread once syncs turn slow (and back again when the disk recovers). Real node, real WAL; the
slow disk is a delay added inside the real ``sync``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from konsul import config
from konsul.node import Node
from konsul.raft import runtime
from konsul.store import commands


async def test_slow_syncs_move_to_a_thread_and_fast_ones_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A threshold far above any real disk's sync, so that only the added delay counts as slow.
    monkeypatch.setattr(runtime, "INLINE_SYNC_SECONDS", 0.02)
    settings = config.load({"KONSUL_DATA_DIR": str(tmp_path), "KONSUL_RAFT_NODE_ID": "n1"})
    node = Node(settings)
    await node.start()
    try:
        assert await node.runtime.wait_applied(node.is_ready, 10)
        wal = node.runtime.wal
        real_sync: Callable[[], None] = wal.sync
        delay = 0.0
        threads: list[bool] = []  # per sync: did it run on the event loop's thread?

        def sync() -> None:
            threads.append(threading.current_thread() is threading.main_thread())
            time.sleep(delay)
            real_sync()

        monkeypatch.setattr(wal, "sync", sync)

        async def write(n: int) -> list[bool]:
            threads.clear()
            for i in range(n):
                await node.propose(commands.kv_set(f"k{i}", "v"))
            return list(threads)

        fast = await write(20)
        assert fast and all(fast), "a fast disk syncs on the loop"
        delay = 0.06
        slow = await write(12)
        assert slow[0] and not any(slow[-6:]), f"slow syncs moved to a thread: {slow}"
        delay = 0.0
        recovered = await write(30)
        assert not recovered[0] and all(recovered[-10:]), f"back on the loop: {recovered}"
        assert node.store.kv_get("k29") is not None
    finally:
        await node.stop()
