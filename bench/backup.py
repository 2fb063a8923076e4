"""Backups and restores: time and size for a million keys, memory of restoring 0.5 GB.

    python -m bench.backup            # a million keys, and 2,000 values of 256 KiB (0.5 GB)
    python -m bench.backup --quick    # 100,000 keys and 200 values of 256 KiB

One node (a one-voter cluster on 127.0.0.1) does everything the backup paths do on a leader:
the state is built in this process and written as a backup file (what a backup of a running
cluster holds, byte for byte), then

- ``konsul restore FILE`` founds a node from it (offline restore), timed, and the node started
  on it until ``/health/ready``: its startup is the restore of that snapshot, and its peak
  resident memory (``VmHWM``) during it is what issue 16 bounds (at most 1.3 times the
  snapshot's size);
- ``konsulctl snapshot save`` takes a backup of that node: time and size;
- ``konsulctl snapshot restore`` puts the backup back online (through the log): time, and the
  node's peak memory while it holds the new state beside the old.

Figures are printed and returned as a dict (``bench.run`` adds them to its report).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from konsul.backup import file
from konsul.store import StateMachine
from konsul.store.snapshot import FORMAT
from tests.processes import REPO, KonsulProcess, free_port, wait_until

MIB = 1 << 20


def make_backup(path: Path, keys: int, value_bytes: int) -> int:
    """A backup file holding ``keys`` keys of ``value_bytes`` each; returns its size."""
    sm = StateMachine()
    value = b"v" * value_bytes
    rows = {f"bench/{i:08d}": (value, 0, i + 1, i + 1) for i in range(keys)}
    sm.kv.load(rows, keys)
    sm.last_applied = keys
    header = file.Header(cluster_id="bench", node_id="bench", index=keys, term=1,
                         created="2026-01-01T00:00:00Z", store_format=FORMAT, kv_count=keys,
                         service_count=0, check_count=0)
    with open(path, "wb") as out:
        for piece in file.write(header, sm.snapshot_chunks()):
            out.write(piece)
    return path.stat().st_size


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def node_for(root: Path) -> KonsulProcess:
    raft = f"127.0.0.1:{free_port()}"
    return KonsulProcess(data_dir=root, env={
        "KONSUL_RAFT_ENABLED": "true", "KONSUL_RAFT_NODE_ID": "bench",
        "KONSUL_RAFT_BIND_ADDR": raft, "KONSUL_RAFT_ADVERTISE_ADDR": raft,
        "KONSUL_RAFT_DATA_DIR": str(root / "raft"),
    })


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(args, env={**os.environ, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def konsulctl(node: KonsulProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "konsul.cli", "--addr", f"127.0.0.1:{node.port}",
            "--timeout", "600", *args]


def measure(root: Path, keys: int, value_bytes: int, online: bool) -> dict[str, float]:
    root.mkdir(parents=True, exist_ok=True)
    seed = root / "seed.snap"
    size = make_backup(seed, keys, value_bytes)
    node = node_for(root / "node")
    node.port = free_port()
    env = {"KONSUL_DATA_DIR": str(node.data_dir), "KONSUL_PORT": str(node.port), **node.env}
    out: dict[str, float] = {"keys": keys, "backup_mb": size / MIB}
    out["offline_restore_s"] = timed([sys.executable, "-m", "konsul", "restore", str(seed)], env)
    started = time.monotonic()
    node.launch()
    try:
        wait_until(node.healthy, 1800, "the restored node to be ready")
        out["start_from_restore_s"] = time.monotonic() - started
        assert node.proc is not None
        out["start_peak_rss_mb"] = peak_rss(node.proc.pid) / MIB
        out["start_peak_over_size"] = peak_rss(node.proc.pid) / size
        saved = root / "saved.snap"
        out["backup_s"] = timed(konsulctl(node, "snapshot", "save", str(saved)))
        out["saved_mb"] = saved.stat().st_size / MIB
        out["inspect_s"] = timed(konsulctl(node, "snapshot", "inspect", str(saved)))
        if online:
            out["online_restore_s"] = timed(konsulctl(node, "snapshot", "restore", str(saved)))
            out["online_peak_rss_mb"] = peak_rss(node.proc.pid) / MIB
    finally:
        node.stop()
    return out


def run(root: Path, quick: bool) -> dict[str, dict[str, float]]:
    keys, values = (100_000, 200) if quick else (1_000_000, 2_000)
    report = {}
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        report["small_keys"] = measure(Path(tmp) / "keys", keys, 32, online=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        report["large_values"] = measure(Path(tmp) / "values", values, 256 * 1024, online=True)
    return report


def render(report: dict[str, dict[str, float]]) -> list[str]:
    keys, big = report["small_keys"], report["large_values"]
    lines = [
        f"## Backup and restore (one node; {int(keys['keys']):,} keys of 32 bytes, and "
        f"{int(big['keys']):,} values of 256 KiB)",
        "",
        "| | keys of 32 bytes | values of 256 KiB |",
        "|---|---|---|",
    ]
    rows = [
        ("backup size (MiB)", "saved_mb", "{:.1f}"),
        ("konsulctl snapshot save (s)", "backup_s", "{:.2f}"),
        ("konsulctl snapshot inspect (s)", "inspect_s", "{:.2f}"),
        ("konsul restore, offline (s)", "offline_restore_s", "{:.2f}"),
        ("node start on it until ready (s)", "start_from_restore_s", "{:.2f}"),
        ("its peak RSS (MiB)", "start_peak_rss_mb", "{:.0f}"),
        ("peak RSS / snapshot size", "start_peak_over_size", "{:.2f}"),
        ("konsulctl snapshot restore, online (s)", "online_restore_s", "{:.2f}"),
        ("peak RSS after the online restore (MiB)", "online_peak_rss_mb", "{:.0f}"),
    ]
    for label, key, form in rows:
        lines.append(f"| {label} | {form.format(keys[key])} | {form.format(big[key])} |")
    ratio = big["start_peak_over_size"]
    verdict = "met" if ratio <= 1.3 else "NOT met"
    lines += ["", f"Bar (issue 16): restoring a 0.5 GB snapshot peaks at <= 1.3 times its size: "
                  f"{ratio:.2f} times, {verdict}."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scratch = Path(__file__).resolve().parent / "results" / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    report = run(scratch, args.quick)
    print(json.dumps(report, indent=1))
    print("\n".join(render(report)))


if __name__ == "__main__":
    main()
