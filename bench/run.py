"""Konsul side by side with etcd on the same machine: same load generator, same values, same keys.

    python -m bench.run            # the full matrix (about 45 minutes)
    python -m bench.run --quick    # one short round of everything but the 1M-key test
    python -m bench.run --tls-only # only the TLS column (add --quick for a short round)
    python -m bench.backup         # only the backup section (add --quick for a short round)

Each system runs as three members on loopback with fsync on. The result of every cell is a ratio
Konsul/etcd; the table goes to stdout and to bench/results/<date>-<host>.{md,json,png}. The TLS
column runs the matrix again with TLS on both sides: Konsul with KONSUL_TLS_* (HTTPS API, mutual
TLS between members), etcd with --cert-file/--key-file and --peer-cert-file/--peer-key-file/
--peer-trusted-ca-file/--peer-client-cert-auth (HTTPS client API, mutual TLS between members),
certificates from one CA. Neither asks the load generator for a client certificate (etcd's
--trusted-ca-file would: wrk cannot present one). It also reports what TLS costs Konsul.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import backup as backup_bench
from bench.systems import (
    EtcdCluster,
    fdatasync_probe,
    first_accepted,
    konsul_cluster,
    konsul_put,
    rss_bytes,
)
from tests.certs import CertDir
from tests.cluster_harness import LocalCluster
from tests.processes import http, wait_until

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua"
KEYS = 10_000  # the key space of the matrix (common.lua's default)


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Row:
    name: str
    konsul: Cell | None = None
    etcd: Cell | None = None


@dataclass
class Report:
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    tls_rows: list[Row] = field(default_factory=list)
    failover_ms: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    backup: dict[str, dict[str, float]] = field(default_factory=dict)  # bench/backup.py


# ------------------------------------------------------------------------------------ wrk

_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, script: str, conns: int, seconds: float, env: dict[str, str]) -> Cell:
    """One wrk run (one thread: the load generator shares the machine's two cores)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(LUA / script), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_LUA": str(LUA), **env},
        check=True,
    ).stdout
    return wrk_cell(out)


def wrk_cell(out: str) -> Cell:
    """The figures of one wrk run's output (run with ``--latency``)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {p: float(v) * _UNIT[u] for p, v, u in _LAT.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Cell(rps, lat.get("50", 0.0), lat.get("99", 0.0), int(bad.group(1)) if bad else 0)


def median_cell(cells: list[Cell]) -> Cell:
    by_rps = sorted(cells, key=lambda c: c.rps)
    return by_rps[len(by_rps) // 2]


# ------------------------------------------------------------------------------- the matrix


@dataclass
class Target:
    """Where one system's cells send their load."""

    write_url: str
    read_url: str
    follower_url: str
    put: str
    get: str
    env_local: dict[str, str]
    env_consistent: dict[str, str]


def matrix(target: Target, seconds: float, repeats: int) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}

    def run(name: str, url: str, script: str, conns: int, env: dict[str, str]) -> None:
        cells[name] = median_cell([wrk(url, script, conns, seconds, env) for _ in range(repeats)])
        c = cells[name]
        print(
            f"    {name:<28} {c.rps:>9.0f} req/s  p50 {c.p50_ms:7.2f} ms  p99 {c.p99_ms:7.2f} ms"
            + (f"  errors {c.errors}" if c.errors else ""),
            flush=True,
        )

    for conns in (1, 16, 64):
        run(f"write c{conns}", target.write_url, target.put, conns, {})
    load_keys(target.write_url, target.put, KEYS, value_bytes=256)  # every read finds its key
    run("read local c16", target.read_url, target.get, 16, target.env_local)
    run("read consistent c16", target.read_url, target.get, 16, target.env_consistent)
    run("read on follower c16", target.follower_url, target.get, 16, target.env_local)
    return cells


def konsul_target(cluster: LocalCluster) -> Target:
    leader = cluster.leader()
    follower = cluster.followers()[0]
    return Target(
        leader.url,
        leader.url,
        follower.url,
        "konsul_put.lua",
        "konsul_get.lua",
        {},
        {"BENCH_QUERY": "?consistent"},
    )


def etcd_target(cluster: EtcdCluster) -> Target:
    leader = cluster.leader()
    assert leader is not None
    follower = cluster.followers()[0]
    return Target(
        leader.url,
        leader.url,
        follower.url,
        "etcd_put.lua",
        "etcd_range.lua",
        {"BENCH_SERIALIZABLE": "1"},
        {},
    )


def tls_matrix(root: Path, seconds: float, repeats: int) -> list[Row]:
    """The matrix again with TLS on both systems (certificates from one CA)."""
    certs = CertDir(root / "tls")
    print("etcd with TLS:", flush=True)
    etcd = EtcdCluster(root / "etcd-tls", certs=certs).start()
    try:
        etcd_cells = matrix(etcd_target(etcd), seconds, repeats)
    finally:
        etcd.stop()
    print("konsul with TLS:", flush=True)
    konsul = konsul_cluster(root / "konsul-tls", certs).start()
    try:
        konsul_cells = matrix(konsul_target(konsul), seconds, repeats)
    finally:
        konsul.stop()
    return [Row(n, konsul_cells[n], etcd_cells[n]) for n in konsul_cells]


# --------------------------------------------------------------------------------- failover


def konsul_failover(cluster: LocalCluster, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        cluster.wait_converged()
        leader = cluster.leader()
        others = [n for n in cluster.running() if n is not leader]
        leader.kill(signal.SIGKILL)
        elapsed = first_accepted(
            lambda others=others: any(konsul_put(n.url, "failover", "x") for n in others)
        )
        times.append(elapsed * 1000)
        leader.start()
    return times


def etcd_failover(cluster: EtcdCluster, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        wait_until(lambda: cluster.leader() is not None and len(cluster.pids()) == 3, 30, "etcd")
        leader = cluster.leader()
        assert leader is not None and leader.proc is not None
        others = [m for m in cluster.members if m is not leader]
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        elapsed = first_accepted(
            lambda others=others: any(cluster.put(m, "failover", "x") for m in others)
        )
        times.append(elapsed * 1000)
        cluster.restart(leader)
    return times


# ----------------------------------------------------------------------------------- memory


def load_keys(url: str, script: str, keys: int, value_bytes: int = 100) -> float:
    """Write keys 0..keys-1 once each (32 connections); returns the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        done = Path(tmp) / "done"
        env = {
            **os.environ,
            "BENCH_LUA": str(LUA),
            "BENCH_SEQUENTIAL": "1",
            "BENCH_KEYS": str(keys),
            "BENCH_VALUE_BYTES": str(value_bytes),
            "BENCH_DONE_FILE": str(done),
        }
        args = ["wrk", "-t1", "-c32", "-d3600s", "-s", str(LUA / script), url]
        with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) as proc:
            # wrk sleeps out -d even once its thread stopped: interrupt it when the script is done
            wait_until(lambda: done.exists() or proc.poll() is not None, 3600, "keys loaded")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate()
        if not done.exists():
            raise RuntimeError(f"loading {keys} keys failed:\n{out}")
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        if bad:
            raise RuntimeError(f"loading {keys} keys: {bad.group(1)} writes refused")
    return time.monotonic() - started


def konsul_memory(root: Path, keys: int) -> dict[str, float]:
    cluster = konsul_cluster(root / "konsul-mem").start()
    try:
        load_s = load_keys(cluster.leader().url, "konsul_put.lua", keys)
        cluster.wait_converged(timeout=600)
        rss = [rss_bytes(n.proc.pid) for n in cluster.nodes if n.proc is not None]
        _, _, snap = http("POST", cluster.leader().url + "/cluster/snapshot", timeout=600)
        for node in cluster.nodes:
            node.kill(signal.SIGKILL)
        # As for etcd: all three launched at once, timed until a write is accepted again.
        started = time.monotonic()
        for node in cluster.nodes:
            node.launch()
        wait_until(
            lambda: any(konsul_put(n.url, "after", "restart", timeout=1) for n in cluster.nodes),
            600,
            "Konsul to serve again",
        )
        restart_s = time.monotonic() - started
        key = f"bench/{keys - 1:08d}"
        code, _, _ = http("GET", f"{cluster.leader().url}/kv/{key}?consistent")
        assert code == 200, f"the last key loaded is missing after the restart ({code})"
        return {
            "load_s": load_s,
            "rss_mb_per_node": statistics.mean(rss) / 2**20,
            "snapshot_mb": snap["size_bytes"] / 2**20,
            "restart_to_serve_s": restart_s,
        }
    finally:
        cluster.stop()


def etcd_memory(root: Path, keys: int) -> dict[str, float]:
    cluster = EtcdCluster(root / "etcd-mem").start()
    try:
        leader = cluster.leader()
        assert leader is not None
        load_s = load_keys(leader.url, "etcd_put.lua", keys)
        time.sleep(2)  # let followers apply (etcd has no applied-index endpoint over JSON)
        rss = [rss_bytes(pid) for pid in cluster.pids()]
        db = cluster.db_size()
        for m in cluster.members:
            if m.proc is not None:
                m.proc.send_signal(signal.SIGKILL)
                m.proc.wait()
        started = time.monotonic()
        for m in cluster.members:
            cluster.restart(m)
        wait_until(
            lambda: (
                cluster.put(cluster.members[0], "after", "restart", timeout=1)
                or cluster.put(cluster.members[1], "after", "restart", timeout=1)
            ),
            600,
            "etcd to serve again",
        )
        restart_s = time.monotonic() - started
        return {
            "load_s": load_s,
            "rss_mb_per_node": statistics.mean(rss) / 2**20,
            "snapshot_mb": db / 2**20,
            "restart_to_serve_s": restart_s,
        }
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------------- report


def machine_facts(data_dir: Path) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": socket.gethostname(),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "etcd": subprocess.run(
            ["etcd", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0],
        "fdatasync_ms": round(fdatasync_probe(data_dir) * 1000, 3),
        "load_generator": "wrk -t1 (shares the two cores with the systems under test)",
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def render(report: Report) -> str:
    m = report.machine
    lines = [
        f"# Konsul vs etcd — {m['date']}",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['etcd']}; fdatasync of the data directory {m['fdatasync_ms']} ms (median). "
        f"Load: {m['load_generator']}; 3 members each on 127.0.0.0/8, 256-byte values.",
    ]
    if report.rows:
        lines += ["", *_table(report.rows)]
    if report.tls_rows:
        lines += ["", "With TLS on both sides (client API and between members):", "",
                  *_table(report.tls_rows)]
    cost = tls_cost(report)
    if cost:
        lines += ["", "| What TLS costs Konsul | plain | TLS | TLS / plain |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {name} | {plain:.2f} | {tls:.2f} | {ratio(tls, plain)} |"
                  for name, plain, tls in cost]
    if report.failover_ms:
        lines += [
            "",
            "| Failover (SIGKILL leader → first accepted write) | median ms | max ms |",
            "|---|---:|---:|",
        ]
        for system, times in report.failover_ms.items():
            lines.append(f"| {system} | {statistics.median(times):.0f} | {max(times):.0f} |")
    if report.memory:
        lines += [
            "",
            "| 1,000,000 keys of 100 bytes | Konsul | etcd | ratio |",
            "|---|---:|---:|---:|",
        ]
        k, e = report.memory.get("konsul", {}), report.memory.get("etcd", {})
        for metric in ("rss_mb_per_node", "snapshot_mb", "restart_to_serve_s", "load_s"):
            if metric in k and metric in e:
                lines.append(
                    f"| {metric} | {k[metric]:.1f} | {e[metric]:.1f} | "
                    f"{ratio(k[metric], e[metric])} |"
                )
    if report.backup:
        lines += ["", *backup_bench.render(report.backup)]
    lines += ["", "The bar (design.md, issue #7):", ""] + [f"- {line}" for line in bar(report)]
    return "\n".join(lines) + "\n"


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| Cell | Konsul req/s | etcd req/s | ratio | Konsul p50 / p99 ms | etcd p50 / p99 ms "
        "| ratio p50 / p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        k, e = row.konsul, row.etcd
        if k is None or e is None:
            continue
        lines.append(
            f"| {row.name} | {k.rps:.0f} | {e.rps:.0f} | {ratio(k.rps, e.rps)} | "
            f"{k.p50_ms:.2f} / {k.p99_ms:.2f} | {e.p50_ms:.2f} / {e.p99_ms:.2f} | "
            f"{ratio(k.p50_ms, e.p50_ms)} / {ratio(k.p99_ms, e.p99_ms)} |"
        )
    return lines


def tls_cost(report: Report) -> list[tuple[str, float, float]]:
    """(what, Konsul plain, Konsul with TLS) for the cells of the bar."""
    plain = {r.name: r.konsul for r in report.rows if r.konsul}
    tls = {r.name: r.konsul for r in report.tls_rows if r.konsul}
    out = []
    for what, name, field_ in (
        ("writes c64, req/s", "write c64", "rps"),
        ("write c1, p50 ms", "write c1", "p50_ms"),
        ("reads c16 default, req/s", "read local c16", "rps"),
    ):
        a, b = plain.get(name), tls.get(name)
        if a is not None and b is not None:
            out.append((what, getattr(a, field_), getattr(b, field_)))
    return out


def bar(report: Report) -> list[str]:
    """Each line of the performance bar, with the measured ratio and whether it holds."""
    out: list[str] = []

    def check(text: str, value: float, ok: bool) -> None:
        out.append(f"{text}: {value:.2f} — {'met' if ok else 'NOT met'}")

    def cell_ratio(rows: list[Row], name: str, field_: str) -> float | None:
        row = next((r for r in rows if r.name == name), None)
        if row is None or row.konsul is None or row.etcd is None:
            return None
        etcd = getattr(row.etcd, field_)
        return getattr(row.konsul, field_) / etcd if etcd else None

    for text, rows, name, field_, limit, at_least in (
        ("writes c64 throughput, Konsul/etcd (>= 1.0)", report.rows, "write c64", "rps", 1.0,
         True),
        ("writes c64 p99, Konsul/etcd (<= 2.0)", report.rows, "write c64", "p99_ms", 2.0,
         False),
        ("reads c16 default vs serializable (>= 1.0)", report.rows, "read local c16", "rps",
         1.0, True),
        ("reads c16 consistent vs linearizable (>= 1.0)", report.rows, "read consistent c16",
         "rps", 1.0, True),
        ("write c1 p50, Konsul/etcd (<= 1.5)", report.rows, "write c1", "p50_ms", 1.5, False),
        ("TLS: writes c64 throughput, Konsul/etcd (>= 1.0)", report.tls_rows, "write c64",
         "rps", 1.0, True),
        ("TLS: write c1 p50, Konsul/etcd (<= 1.5)", report.tls_rows, "write c1", "p50_ms", 1.5,
         False),
    ):
        value = cell_ratio(rows, name, field_)
        if value is not None:
            check(text, value, value >= limit if at_least else value <= limit)
    fail = report.failover_ms
    if "konsul" in fail and "etcd" in fail:
        k, e = statistics.median(fail["konsul"]), statistics.median(fail["etcd"])
        check("failover median, Konsul seconds (< 1 s and below etcd's)", k / 1000,
              k < 1000 and k < e)
    mem_k, mem_e = report.memory.get("konsul"), report.memory.get("etcd")
    if mem_k and mem_e:
        rss = mem_k["rss_mb_per_node"] / mem_e["rss_mb_per_node"]
        check("1M keys RSS per node, Konsul/etcd (<= 2.0)", rss, rss <= 2.0)
        restart = mem_k["restart_to_serve_s"] / mem_e["restart_to_serve_s"]
        check("1M keys restart to serving, Konsul/etcd (<= 1.0)", restart, restart <= 1.0)
    return out


def chart(report: Report, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart", file=sys.stderr)
        return
    rows = [r for r in report.rows if r.konsul and r.etcd]
    names = [r.name for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r.konsul.rps for r in rows], 0.4, label="Konsul")  # type: ignore[union-attr]
    ax.bar([x + 0.2 for x in xs], [r.etcd.rps for r in rows], 0.4, label="etcd")  # type: ignore[union-attr]
    ax.set_xticks(list(xs), names, rotation=20, ha="right")
    ax.set_ylabel("requests / s")
    ax.set_title(f"Konsul vs etcd, 3 members each, {report.machine['date']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round, no 1M-key test")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for the memory test")
    parser.add_argument("--tls-only", action="store_true", help="only the TLS column")
    args = parser.parse_args()
    seconds, repeats, rounds = (5, 1, 3) if args.quick else (20, 3, 10)

    # Both systems' data on the same filesystem, next to the results.
    scratch = HERE / "results" / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="konsul-bench-", dir=scratch))
    report = Report(machine_facts(root))
    print(json.dumps(report.machine, indent=1), flush=True)
    try:
        if not args.tls_only:
            print("etcd:", flush=True)
            etcd = EtcdCluster(root / "etcd").start()
            try:
                etcd_cells = matrix(etcd_target(etcd), seconds, repeats)
                report.failover_ms["etcd"] = etcd_failover(etcd, rounds)
            finally:
                etcd.stop()
            print("konsul:", flush=True)
            konsul = konsul_cluster(root / "konsul").start()
            try:
                konsul_cells = matrix(konsul_target(konsul), seconds, repeats)
                report.failover_ms["konsul"] = konsul_failover(konsul, rounds)
            finally:
                konsul.stop()
            report.rows = [Row(n, konsul_cells[n], etcd_cells[n]) for n in konsul_cells]
        report.tls_rows = tls_matrix(root, seconds, repeats)
        if not args.quick and not args.tls_only:
            report.memory["etcd"] = etcd_memory(root, args.keys)
            report.memory["konsul"] = konsul_memory(root, args.keys)
        if not args.tls_only:
            print("backup:", flush=True)
            report.backup = backup_bench.run(root, args.quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    text = render(report)
    print(text)
    if not args.quick and not args.tls_only:
        stem = args.out / f"{time.strftime('%Y-%m-%d')}-{report.machine['host']}"
        args.out.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(
            json.dumps({**asdict(report), "bar": bar(report)}, indent=1)
        )
        chart(report, stem.with_suffix(".png"))
        print(f"written: {stem}.md .json .png")


if __name__ == "__main__":
    main()
