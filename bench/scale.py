"""Issue 16's scale figures, on three members on this machine (the settings of bench.run).

    python -m bench.scale            # the full rounds (about 40 minutes)
    python -m bench.scale --quick    # one short round of each part (about 5 minutes)
    python -m bench.scale --only watchers --watchers 5000    # one part, at one size

- **watchers**: W blocking reads parked on the leader on one key, then one prefix, then one
  service. For each: the throughput of one client writing *unrelated* keys beside them (against
  the same client with nobody parked, just before and just after), the leader's memory per
  parked reader, and the time from one change to each reader's first answer byte. Beside it,
  etcd: W watchers of one key through its HTTP watch gateway (``POST /v3/watch``), time from
  one put to each watcher's event.
- **catalog**: 10,000 instances; ``GET /services`` and ``GET /services/<name>`` under wrk, and
  the leader's CPU per answer.
- **checks**: N HTTP checks every 10 s against a target on 127.0.0.1 (its own process), one
  client writing every 50 ms: probes per second against N/10 (and by member: the target counts
  each worker's User-Agent), leader changes, the client's write p99, CPU per member (the member
  process and its probe worker together, and the worker's part). ``--checks N`` (repeatable)
  and ``--check-seconds S`` choose the sizes and the duration.
- **values**: 2,000 values of 256 KiB, a follower down while 500 more are written, then back:
  the leader's memory during its catch-up, its time, its readiness; the restore of those 2,000
  values (``bench.large_values``).

Figures print as they come and go to bench/results/<date>-<host>-scale.{json,md}. Readers are
raw sockets: a reader's time is the arrival of its answer's first byte, not the time a Python
HTTP client needed to parse thousands of answers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import large_values
from bench.run import Cell, wrk_cell
from bench.systems import EtcdCluster, rss_bytes
from tests.cluster_harness import ClusterNode, LocalCluster
from tests.processes import free_port, wait_until
from tests.processes import http as call

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WAIT = "300s"


@dataclass
class Round:
    """One sizing of the bench: the full one, or --quick."""

    watchers: tuple[int, ...]
    write_seconds: float
    instances: int
    read_seconds: float
    checks: tuple[int, ...]
    check_seconds: float
    values: tuple[int, int] = (2000, 500)  # large values: written, then written while one is down
    value_cases: tuple[str, ...] = ("stopped", "frozen", "snapshot")  # large_values.cases


FULL = Round((1000, 5000), 10, 10_000, 10, (1000, 5000, 10_000, 20_000), 300)
QUICK = Round((1000,), 4, 10_000, 4, (1000,), 40, value_cases=("stopped",))


@dataclass
class Report:
    machine: dict[str, Any]
    watchers: list[dict[str, Any]] = field(default_factory=list)
    etcd_watchers: list[dict[str, Any]] = field(default_factory=list)
    catalog: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    large_values: dict[str, Any] = field(default_factory=dict)


def say(text: str) -> None:
    print(text, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


# ------------------------------------------------------------------------------ raw readers


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_read(host: str, port: int, request: bytes) -> Connection:
    """Send one request on a new connection. (Keep the writer: dropping it closes the socket.)"""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    return reader, writer


def get_request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def park(host: str, port: int, requests: list[bytes], batch: int = 200
               ) -> list[Connection]:
    """Send each request on a connection of its own (``batch`` connections at a time)."""
    connections: list[Connection] = []
    for start in range(0, len(requests), batch):
        connections += await asyncio.gather(*(
            open_read(host, port, r) for r in requests[start:start + batch]
        ))
    return connections


class Arrivals:
    """When each reader's answer starts arriving (watched from the moment they are parked)."""

    def __init__(self, connections: list[Connection]) -> None:
        self.times: list[float] = []
        self._connections = connections
        self._tasks = [asyncio.create_task(self._first_byte(r)) for r, _ in connections]

    async def _first_byte(self, reader: asyncio.StreamReader) -> None:
        await reader.read(1)
        self.times.append(time.monotonic())

    async def since(self, moment: float, timeout: float) -> list[float]:
        """Seconds from ``moment`` to each arrival within ``timeout``; the rest are dropped."""
        await asyncio.wait(self._tasks, timeout=timeout)
        for task in self._tasks:
            task.cancel()
        for _, writer in self._connections:
            writer.close()
        return [t - moment for t in self.times]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def wrk_get(url: str, conns: int, seconds: float) -> Cell:
    """wrk GETting one URL (one thread, as bench.run)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    return wrk_cell(out)


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def index_of(node: ClusterNode, path: str) -> int:
    status, headers, _ = node.call("GET", path)
    assert status in (200, 404), (path, status)
    return int(headers["X-Konsul-Index"])


def write_rate(node: ClusterNode, seconds: float) -> float:
    """Writes per second of one client writing unrelated keys one after another (one kept-alive
    connection, as the issue's figures)."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    body = json.dumps({"value": "x"})
    done, deadline = 0, time.monotonic() + seconds
    started = time.monotonic()
    try:
        while time.monotonic() < deadline:
            conn.request("PUT", f"/kv/unrelated/{done % 1000}", body,
                         {"Content-Type": "application/json"})
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200, answer.status
            done += 1
    finally:
        conn.close()
    return done / (time.monotonic() - started)


# --------------------------------------------------------------------------------- watchers


@dataclass
class Topic:
    name: str
    path: Callable[[int], str]  # the blocking read at an index
    index_path: str  # the read that gives the current index
    change: Callable[[ClusterNode], None]


def topics() -> list[Topic]:
    def put(key: str) -> Callable[[ClusterNode], None]:
        return lambda n: _ok(n.call("PUT", f"/kv/{key}", {"value": str(time.time())}))

    def register(n: ClusterNode) -> None:
        _ok(n.call("PUT", "/register", {"id": f"watched-{time.time_ns()}", "name": "watched"}))

    return [
        Topic("key", lambda i: f"/kv/watched/key?index={i}&wait={WAIT}", "/kv/watched/key",
              put("watched/key")),
        Topic("prefix", lambda i: f"/kv/?prefix=watched/dir/&index={i}&wait={WAIT}",
              "/kv/?prefix=watched/dir/", put("watched/dir/new")),
        Topic("service", lambda i: f"/services/watched?index={i}&wait={WAIT}",
              "/services/watched", register),
    ]


def _ok(answer: tuple[int, dict[str, str], Any]) -> None:
    assert answer[0] == 200, answer


async def watchers_round(leader: ClusterNode, count: int, topic: Topic, before: float,
                         seconds: float, rss_before: int) -> tuple[dict[str, Any], float]:
    """One round, and the unrelated write rate once its readers are gone.

    The writes kept are measured against the rates just before (``before``) and just after the
    round, nobody parked: on a shared machine the rate drifts by more than the readers cost
    over the minutes of a whole run. ``rss_before``: the leader's memory before any reader was
    parked (a process rarely gives memory back: measured against the last round, the later
    rounds would look free)."""
    pid = leader.proc.pid if leader.proc else 0
    index = index_of(leader, topic.index_path)
    request = get_request(leader.host, topic.path(index))
    arrivals = Arrivals(await park(leader.host, leader.port, [request] * count))
    await in_thread(lambda: wait_until(lambda: parked(leader) >= count, 60, "parked readers"))
    rss_parked = rss_bytes(pid)
    rate = await in_thread(lambda: write_rate(leader, seconds))
    early = len(arrivals.times)  # answered by an unrelated write: there should be none
    since = time.monotonic()
    await in_thread(lambda: topic.change(leader))
    answered = await arrivals.since(since, 10)
    await in_thread(lambda: wait_until(lambda: parked(leader) == 0, 30, "all readers gone"))
    after = await in_thread(lambda: write_rate(leader, seconds))
    baseline = (before + after) / 2
    row = {
        "watchers": count,
        "topic": topic.name,
        "writes_per_s": round(rate, 1),
        "writes_unwatched_per_s": round(baseline, 1),
        "writes_kept": round(rate / baseline, 3),
        "kib_per_reader": round((rss_parked - rss_before) / count / 1024, 1),
        "woken_by_unrelated_writes": early,
        "answered": len(answered),
        "within_1s": sum(1 for t in answered if t <= 1.0),
        **percentiles(answered or [float("inf")]),
    }
    say(f"  {count:>5} on one {topic.name:<7}  unrelated writes {rate:6.0f}/s "
        f"({row['writes_kept']:.0%} of {baseline:.0f})  {row['kib_per_reader']:5.1f} KiB/reader  "
        f"one change: p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms max {row['max_ms']} ms "
        f"({row['within_1s']}/{count} within 1 s)")
    return row, after


def parked(node: ClusterNode) -> int:
    for line in fetch(node.url + "/metrics").decode().splitlines():
        if line.startswith("konsul_blocking_reads_parked "):
            return int(float(line.split()[1]))
    raise AssertionError("no konsul_blocking_reads_parked in /metrics")


async def watchers(root: Path, counts: tuple[int, ...], seconds: float, report: Report) -> None:
    say("watchers (parked on the leader, one client writing unrelated keys to it):")
    cluster = LocalCluster(root / "watchers", size=3).start()
    try:
        leader = cluster.leader()
        _ok(leader.call("PUT", "/kv/watched/key", {"value": "0"}))
        _ok(leader.call("PUT", "/kv/watched/dir/a", {"value": "0"}))
        _ok(leader.call("PUT", "/register", {"id": "watched-0", "name": "watched"}))
        unwatched = await in_thread(lambda: write_rate(leader, seconds))
        rss = rss_bytes(leader.proc.pid if leader.proc else 0)
        say(f"  nobody parked: unrelated writes {unwatched:.0f}/s, leader RSS {rss >> 20} MiB")
        for count in counts:
            for topic in topics():
                row, unwatched = await watchers_round(leader, count, topic, unwatched, seconds,
                                                      rss)
                report.watchers.append(row)
    finally:
        cluster.stop()


async def etcd_watchers(root: Path, counts: tuple[int, ...], report: Report) -> None:
    say("etcd (the same watchers of one key through its watch gateway):")
    etcd = EtcdCluster(root / "etcd").start()
    try:
        leader = etcd.leader()
        assert leader is not None
        url = urllib.parse.urlsplit(leader.url)
        host, port = url.hostname or "127.0.0.1", url.port or 0
        key = base64.b64encode(b"watched/key").decode()
        body = json.dumps({"create_request": {"key": key}}).encode()
        request = (f"POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                   f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        for count in counts:
            readers = await park(host, port, [request] * count)
            # each stream first says "created": read it before the put
            await asyncio.gather(*(r.readuntil(b'"created":true') for r, _ in readers))
            arrivals = Arrivals(readers)
            since = time.monotonic()
            assert await in_thread(lambda: etcd.put(leader, "watched/key", "1", timeout=5))
            answered = await arrivals.since(since, 10)
            row = {"watchers": count, "answered": len(answered),
                   "within_1s": sum(1 for t in answered if t <= 1.0),
                   **percentiles(answered or [float("inf")])}
            report.etcd_watchers.append(row)
            say(f"  {count:>5} on one key  one change: p50 {row['p50_ms']} ms "
                f"p99 {row['p99_ms']} ms max {row['max_ms']} ms")
    finally:
        etcd.stop()


# ---------------------------------------------------------------------------------- catalog


async def register_many(node: ClusterNode, count: int, checks: Callable[[int], list[Any]],
                        concurrency: int = 32) -> None:
    """Register ``count`` instances (``svc<i % 100>``) through the leader."""
    queue = list(range(count))
    url = node.url

    def worker() -> None:
        nonlocal url
        while queue:
            i = queue.pop()
            body = {"id": f"inst-{i}", "name": f"svc{i % 100}", "address": "127.0.0.1",
                    "port": 8000 + i % 1000, "tags": ["bench"], "checks": checks(i)}
            deadline = time.monotonic() + 60
            while True:  # through leader changes (a figure of the checks round of its own)
                status, _, answer = call("PUT", url + "/register", body, timeout=60)
                if status == 200:
                    break
                assert time.monotonic() < deadline and status in (307, 503), (status, answer)
                if status == 307 and answer.get("leader_http_addr"):
                    url = f"http://{answer['leader_http_addr']}"
                time.sleep(0.1)

    await asyncio.gather(*(in_thread(worker) for _ in range(concurrency)))


async def catalog(root: Path, instances: int, seconds: float, report: Report) -> None:
    say(f"catalog ({instances} instances, wrk with 16 connections on the leader):")
    cluster = LocalCluster(root / "catalog", size=3).start()
    try:
        leader = cluster.leader()
        await register_many(leader, instances, lambda i: [])
        size = len(fetch(leader.url + "/services"))
        pid = leader.proc.pid if leader.proc else 0
        for name, path in (("GET /services", "/services"),
                           ("GET /services/<name>", "/services/svc7")):
            cpu = cpu_seconds(pid)
            cell = wrk_get(leader.url + path, 16, seconds)
            # the leader's CPU per answer: what a busy machine changes least
            per_request_us = (cpu_seconds(pid) - cpu) / (cell.rps * seconds) * 1e6
            report.catalog[name] = {"rps": round(cell.rps), "p99_ms": cell.p99_ms,
                                    "errors": cell.errors,
                                    "leader_cpu_us_per_request": round(per_request_us)}
            say(f"  {name:<22} {cell.rps:8.0f} req/s  p99 {cell.p99_ms:7.2f} ms  "
                f"leader CPU {per_request_us:4.0f} us/request")
        report.catalog["services_bytes"] = size
    finally:
        cluster.stop()


# ----------------------------------------------------------------------------------- checks


def serve_target(port: int) -> None:
    """The checks' target (``--target PORT``): answers 200 and counts, ``/count`` tells."""
    from aiohttp import web

    hits = 0
    by_member: dict[str, int] = {}

    async def probe(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        member = request.headers.get("User-Agent", "").rsplit(" ", 1)[-1].rstrip(")")
        by_member[member] = by_member.get(member, 0) + 1
        return web.Response(text="ok")

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"hits": hits, "at": time.monotonic(), "by_member": by_member})

    app = web.Application()
    app.router.add_get("/count", count)
    app.router.add_get("/{tail:.*}", probe)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def target_hits(url: str) -> tuple[int, float]:
    _, _, body = call("GET", url + "/count")
    return int(body["hits"]), float(body["at"])


def target_by_member(url: str) -> dict[str, int]:
    _, _, body = call("GET", url + "/count")
    return {k: int(v) for k, v in body["by_member"].items()}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_cpu_seconds(pid: int) -> float:
    """CPU of a member's children (its probe worker) that are running now."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    total = 0.0
    for child in path.read_text().split() if path.exists() else []:
        with contextlib.suppress(FileNotFoundError):  # (it just exited)
            total += cpu_seconds(int(child))
    return total


class Writer:
    """One client writing every 50 ms to whoever leads; latencies and failures recorded."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.latencies: list[float] = []
        self.failures = 0
        self.leaders: list[tuple[int, str]] = []  # (term, leader) as each change was seen

    async def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            await in_thread(lambda n=n: self._one(n))  # type: ignore[misc]
            n += 1
            await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - started)))

    def _one(self, n: int) -> None:
        node = self._leader()
        started = time.monotonic()
        try:
            status, _, _ = node.call("PUT", f"/kv/writer/{n % 100}", {"value": "x"}, timeout=5)
        except OSError:
            status = 0
        if status == 200:
            self.latencies.append(time.monotonic() - started)
        else:
            self.failures += 1

    def _leader(self) -> ClusterNode:
        for node in self.cluster.running():
            status = node.status()
            if status and status.get("state") == "Leader":
                seen = (int(status["term"]), node.node_id)
                if not self.leaders or self.leaders[-1] != seen:
                    self.leaders.append(seen)
                return node
        return self.cluster.running()[0]


async def checks_round(root: Path, count: int, seconds: float, report: Report) -> None:
    port = free_port()
    target = subprocess.Popen([sys.executable, "-m", "bench.scale", "--target", str(port)],
                              cwd=HERE.parent)
    target_url = f"http://127.0.0.1:{port}"
    cluster = LocalCluster(root / f"checks-{count}", size=3)
    try:
        wait_until(lambda: _answers(target_url), 20, "the check target")
        cluster.start()
        leader = cluster.leader()
        registering = time.monotonic()
        await register_many(leader, count, lambda i: [
            {"id": f"probe-{i}", "http": f"{target_url}/probe/{i}", "interval": "10s",
             "timeout": "5s"}])
        registered = time.monotonic() - registering
        await asyncio.sleep(10)  # one interval: every check has started
        pids = {n.node_id: n.proc.pid for n in cluster.running() if n.proc}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        wcpu0 = {k: worker_cpu_seconds(p) for k, p in pids.items()}
        hits0, at0 = target_hits(target_url)
        by0 = target_by_member(target_url)
        writer = Writer(cluster)
        await writer.run(seconds)
        hits1, at1 = target_hits(target_url)
        by1 = target_by_member(target_url)
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        wcpu1 = {k: worker_cpu_seconds(p) for k, p in pids.items()}
        elapsed = at1 - at0
        worker_cpu = {k: (wcpu1[k] - wcpu0[k]) / elapsed for k in pids}
        row = {
            "checks": count,
            "seconds": seconds,
            "register_s": round(registered, 1),
            "probes_per_s": round((hits1 - hits0) / elapsed, 1),
            "expected_per_s": count / 10,
            "leader_changes": max(0, len(writer.leaders) - 1),
            "write_p99_ms": round(statistics.quantiles(writer.latencies, n=100)[98] * 1000, 1)
            if len(writer.latencies) > 100 else None,
            "write_failures": writer.failures,
            "probes_per_s_by_member": {k: round((v - by0.get(k, 0)) / elapsed, 1)
                                       for k, v in sorted(by1.items())},
            "cpu_per_member": {k: round((cpu1[k] - cpu0[k]) / elapsed + worker_cpu[k], 2)
                               for k in pids},
            "cpu_worker": {k: round(v, 2) for k, v in worker_cpu.items()},
        }
        report.checks.append(row)
        say(f"  {count:>6} checks  probes {row['probes_per_s']}/s (N/10 = {count / 10:.0f})  "
            f"leader changes {row['leader_changes']}  write p99 {row['write_p99_ms']} ms  "
            f"failures {writer.failures}  CPU {row['cpu_per_member']} (workers "
            f"{row['cpu_worker']})  by member {row['probes_per_s_by_member']}")
    finally:
        cluster.stop()
        target.terminate()
        target.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        target_hits(url)
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_results(report: Report, quick: bool, partial: bool) -> Path:
    """``partial``: some parts or other sizes only (never in place of a whole run's file)."""
    RESULTS.mkdir(exist_ok=True)
    stem = f"{time.strftime('%Y-%m-%d', time.gmtime())}-{platform.node()}-scale"
    if quick:
        stem += "-quick"
    if partial:
        stem += "-partial"
    path = RESULTS / f"{stem}.json"
    report.machine["load_average_after"] = os.getloadavg()
    path.write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return path


async def main_async(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    if args.watchers:
        sizes = dataclasses.replace(sizes, watchers=tuple(args.watchers))
    if args.checks or args.check_seconds:
        sizes = dataclasses.replace(sizes, checks=tuple(args.checks or sizes.checks),
                                    check_seconds=args.check_seconds or sizes.check_seconds)
    report = Report(machine())
    say(f"load average {report.machine['load_average']}")
    parts: dict[str, Callable[[Path], Awaitable[None]]] = {
        "watchers": lambda root: watchers(root, sizes.watchers, sizes.write_seconds, report),
        "etcd": lambda root: etcd_watchers(root, sizes.watchers, report),
        "catalog": lambda root: catalog(root, sizes.instances, sizes.read_seconds, report),
        "checks": lambda root: _all_checks(root, sizes, report),
        "values": lambda root: _large_values(root, sizes, report),
    }
    with tempfile.TemporaryDirectory(prefix="konsul-scale-") as tmp:
        for name in args.only or list(parts):
            await parts[name](Path(tmp))
    partial = bool(args.only or args.watchers or args.checks or args.check_seconds)
    say(f"results: {write_results(report, args.quick, partial)}")


async def _all_checks(root: Path, sizes: Round, report: Report) -> None:
    say(f"checks (HTTP every 10 s, one client writing every 50 ms, {sizes.check_seconds:.0f} s):")
    for count in sizes.checks:
        await checks_round(root, count, sizes.check_seconds, report)


async def _large_values(root: Path, sizes: Round, report: Report) -> None:
    keys, more = sizes.values
    report.large_values = await in_thread(
        lambda: large_values.measure(root, keys, more, sizes.value_cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round of each part")
    parser.add_argument("--only", action="append",
                        choices=("watchers", "etcd", "catalog", "checks", "values"))
    parser.add_argument("--watchers", action="append", type=int, metavar="W",
                        help="parked readers per round instead of the sizing's (repeatable)")
    parser.add_argument("--checks", type=int, action="append", metavar="N",
                        help="check rounds of N checks (repeatable; instead of the defaults)")
    parser.add_argument("--check-seconds", type=float, metavar="S",
                        help="how long each check round measures")
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.target:
        serve_target(args.target)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
