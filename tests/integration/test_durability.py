"""A real standalone node loses no acknowledged write: SIGKILL, torn or garbled log tails,
corrupt snapshots, snapshots with compaction, restarts."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.processes import KonsulProcess, http, wait_until


def _wal_segments(node: KonsulProcess) -> list[Path]:
    return sorted((node.data_dir / "raft" / "wal").glob("*.wal"))


def _put(node: KonsulProcess, key: str, value: str) -> int:
    status, _, _ = http("PUT", f"{node.url}/kv/{key}", {"value": value}, timeout=10)
    return status


def _get(node: KonsulProcess, key: str) -> str | None:
    status, _, body = http("GET", f"{node.url}/kv/{key}")
    return body["value"] if status == 200 else None


def test_sigkill_loses_no_acknowledged_write(konsul_process: KonsulProcess) -> None:
    node = konsul_process.start()
    acked: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        n = 0
        while not stop.is_set():
            key, value = f"w{worker}/k{n}", f"v{worker}-{n}"
            try:
                if _put(node, key, value) == 200:
                    with lock:
                        acked[key] = value
            except OSError:
                return  # the node is gone: this write was never acknowledged
            n += 1

    with ThreadPoolExecutor(16) as pool:
        for worker in range(16):
            pool.submit(writer, worker)
        wait_until(lambda: len(acked) >= 1000, 120, "1,000 acknowledged writes")
        node.kill()  # SIGKILL while the writers are still going
        stop.set()

    node.start()
    missing = [k for k, v in sorted(acked.items()) if _get(node, k) != v]
    assert len(acked) >= 1000
    assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def _write_keys(node: KonsulProcess, count: int, prefix: str = "k") -> None:
    for i in range(count):
        assert _put(node, f"{prefix}{i:04d}", f"value-{i}") == 200


def test_torn_log_tail_keeps_every_record_before_it(konsul_process: KonsulProcess) -> None:
    node = konsul_process.start()
    _write_keys(node, 50)
    node.kill()
    segment = _wal_segments(node)[-1]
    size = segment.stat().st_size
    os.truncate(segment, size - 7)  # cut the last record mid-way

    node.start()
    values = [_get(node, f"k{i:04d}") for i in range(50)]
    assert values[:49] == [f"value-{i}" for i in range(49)]
    assert "dropped" in node.logs() or "truncat" in node.logs()


def test_garbled_log_tail_keeps_every_record_before_it(konsul_process: KonsulProcess) -> None:
    node = konsul_process.start()
    _write_keys(node, 50)
    node.kill()
    segment = _wal_segments(node)[-1]
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte inside the last record's payload
    segment.write_bytes(bytes(data))

    node.start()
    values = [_get(node, f"k{i:04d}") for i in range(50)]
    assert values[:49] == [f"value-{i}" for i in range(49)]
    assert "dropped" in node.logs() or "truncat" in node.logs()


def test_corrupt_newest_snapshot_falls_back_to_previous_plus_log(tmp_path: Path) -> None:
    node = KonsulProcess(
        tmp_path / "node",
        env={"KONSUL_RAFT_SNAPSHOT_THRESHOLD": "40", "KONSUL_RAFT_TRAILING_LOGS": "5"},
    )
    try:
        node.start()
        _write_keys(node, 130)
        snapshots = node.data_dir / "raft" / "snapshots"
        wait_until(lambda: len(list(snapshots.glob("*.snap"))) >= 2, 10, "two snapshots")
        node.kill()
        newest = sorted(snapshots.glob("*.snap"))[-1]
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))

        node.start()
        assert [_get(node, f"k{i:04d}") for i in range(130)] == [f"value-{i}" for i in range(130)]
    finally:
        node.kill()
