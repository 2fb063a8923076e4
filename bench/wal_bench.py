"""Baseline figures for the write-ahead log: appends/s (with and without fsync) and recovery speed.

    .venv/bin/python bench/wal_bench.py                  # defaults, about a minute
    .venv/bin/python bench/wal_bench.py --records 200000 --seconds 2 --json

Entries are built before the clock starts, so the figures are the WAL's cost, not the caller's.
Recovery is measured from the page cache (the file was just written); a cold cache adds the
disk's read time on top.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from konsul.raft.types import Entry, EntryKind, SnapshotMeta
from konsul.storage.snapshots import SnapshotStore
from konsul.storage.wal import WriteAheadLog


def batches_of(start: int, batch: int, count: int, size: int) -> list[list[Entry]]:
    data = b"v" * size
    return [
        [Entry(i, 1, EntryKind.COMMAND, data) for i in range(s, s + batch)]
        for s in range(start, start + batch * count, batch)
    ]


def bench_append(
    directory: str, batch: int, size: int, seconds: float, sync: bool
) -> dict[str, float]:
    """Append batches (and fdatasync each, when ``sync``) for about ``seconds``."""
    shutil.rmtree(directory, ignore_errors=True)
    wal = WriteAheadLog.open(directory)
    # Pre-build enough batches; calibrate on a short run so building does not dominate memory.
    probe = batches_of(1, batch, 20, size)
    started = time.perf_counter()
    for b in probe:
        wal.append(b)
        if sync:
            wal.sync()
    per_batch = (time.perf_counter() - started) / len(probe)
    count = max(20, min(int(seconds / max(per_batch, 1e-7)), 2_000_000 // batch))
    work = batches_of(wal.last_index + 1, batch, count, size)
    started = time.perf_counter()
    for b in work:
        wal.append(b)
        if sync:
            wal.sync()
    elapsed = time.perf_counter() - started
    wal.close()
    return {
        "batch": batch,
        "entry_bytes": size,
        "sync": sync,
        "entries_per_s": count * batch / elapsed,
        "batches_per_s": count / elapsed,
        "mb_per_s": count * batch * size / elapsed / 1e6,
    }


def bench_recovery(directory: str, records: int, size: int) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    wal = WriteAheadLog.open(directory)
    step = 10_000
    data = b"r" * size
    for s in range(1, records + 1, step):
        wal.append(
            [Entry(i, 1, EntryKind.COMMAND, data) for i in range(s, min(s + step, records + 1))]
        )
    wal.sync()
    wal.close()
    disk = sum(p.stat().st_size for p in Path(directory).glob("*.wal"))
    started, cpu_started = time.perf_counter(), time.process_time()
    wal = WriteAheadLog.open(directory)
    entries = wal.entries()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert len(entries) == records and wal.recovery.clean
    wal.close()
    return {
        "records": records,
        "entry_bytes": size,
        "disk_mb": disk / 1e6,
        "seconds": elapsed,
        "cpu_seconds": cpu,  # less sensitive than wall time to other work on the machine
        "records_per_s": records / elapsed,
    }


def bench_snapshot(directory: str, megabytes: int) -> dict[str, float]:
    """Save (temp, fsync, rename) and load (read, checksum) one snapshot of ``megabytes``."""
    shutil.rmtree(directory, ignore_errors=True)
    data = os.urandom(1 << 20) * megabytes
    store = SnapshotStore(directory, retention=2)
    started = time.perf_counter()
    store.save(SnapshotMeta(1000, 1), data)
    saved = time.perf_counter() - started
    del data
    store = SnapshotStore(directory, retention=2)  # a fresh store: nothing verified yet
    started = time.perf_counter()
    loaded = store.load_latest()
    load = time.perf_counter() - started
    assert loaded is not None and len(loaded[1]) == megabytes << 20
    store.close()
    return {"megabytes": megabytes, "save_s": saved, "load_s": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a temp dir, removed after)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per append scenario")
    parser.add_argument("--records", type=int, default=1_000_000, help="for the recovery run")
    parser.add_argument("--entry-bytes", type=int, default=128)
    parser.add_argument("--batches", default="1,16,256", help="entries per append batch")
    parser.add_argument("--snapshot-mb", type=int, default=0, help="also time a snapshot")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()

    root = args.dir or tempfile.mkdtemp(prefix="wal-bench-")
    directory = os.path.join(root, "wal")
    results: dict[str, object] = {"append": [], "recovery": None}
    appends: list[dict[str, float]] = []
    try:
        for batch in (int(b) for b in args.batches.split(",")):
            for sync in (True, False):
                r = bench_append(directory, batch, args.entry_bytes, args.seconds, sync)
                appends.append(r)
                if not args.json:
                    print(
                        f"append batch={batch:<4} {'fdatasync' if sync else 'no sync  '} "
                        f"{r['entries_per_s']:>12,.0f} entries/s "
                        f"{r['batches_per_s']:>10,.0f} batches/s {r['mb_per_s']:8.1f} MB/s",
                        flush=True,
                    )
        results["append"] = appends
        rec = bench_recovery(directory, args.records, 32)
        results["recovery"] = rec
        if not args.json:
            print(
                f"recovery {rec['records']:,} records of 32 B ({rec['disk_mb']:.0f} MB): "
                f"{rec['seconds']:.2f} s ({rec['cpu_seconds']:.2f} s CPU), "
                f"{rec['records_per_s']:,.0f} records/s"
            )
        if args.snapshot_mb:
            snap = bench_snapshot(os.path.join(root, "snapshots"), args.snapshot_mb)
            results["snapshot"] = snap
            if not args.json:
                print(
                    f"snapshot {snap['megabytes']} MB: save {snap['save_s']:.2f} s, "
                    f"load (read + checksum) {snap['load_s']:.2f} s"
                )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
