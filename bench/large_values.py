"""Issue 16's large values: a follower that was down comes back to a leader holding 0.5 GB.

On three members (real processes, ``tests.cluster_harness.LocalCluster``):

1. ``keys`` values of 256 KiB are written through the leader (``PUT /v1/kv``, raw bodies, a few
   clients at once); once every member has applied them, the leader's resident memory
   (``VmRSS``) is its *steady state*.
2. One follower is stopped (SIGTERM: a member down for a while, as in a rolling restart), and
   ``more`` values are written while it is away.
3. It is started again from its data directory. Until its applied index reaches the leader's
   commit index (the *catch-up time*), the leader's ``VmRSS`` is sampled every 100 ms (its
   peak; the follower's own peak is its ``VmHWM``), and its ``/health/ready`` is polled: a 200
   while it is more than ``READY_MAX_LAG`` entries behind is counted (the bar: never). No
   client writes during the catch-up, so the leader's commit index is fixed and the lag at
   each answer is known.

``cases`` also freezes the follower instead (SIGSTOP), or lets the leader compact its log past
it so that it is sent a snapshot.

Bars: the leader's peak during the catch-up at most 1.5 times its steady state; ready only once
caught up. The restore bar (a 0.5 GB snapshot restored at a peak of at most 1.3 times its size)
is ``bench.backup``'s measurement, run here on the same 2,000 values and reported beside.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import backup
from bench.backup import peak_rss
from bench.systems import rss_bytes
from konsul.node import READY_MAX_LAG
from tests.cluster_harness import ClusterNode, LocalCluster

VALUE_BYTES = 256 * 1024
MIB = 1 << 20
SAMPLE_S = 0.1
RSS_BAR = 1.5
WRITERS = 4


def say(text: str) -> None:
    print(text, flush=True)


class Sampler:
    """The peak ``VmRSS`` of a process, sampled every ``SAMPLE_S`` in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            self._stop.wait(SAMPLE_S)


def value_of(i: int, block: bytes) -> bytes:
    """Distinct 256 KiB values without generating 256 KiB of randomness each."""
    return i.to_bytes(8, "big") + block[8:]


def put(conn: http.client.HTTPConnection, path: str, body: bytes, timeout: float = 60) -> None:
    """One write; retried while the cluster has no leader or changes it (a member forwards
    /v1 writes to whoever leads)."""
    deadline = time.monotonic() + timeout
    while True:
        conn.request("PUT", path, body)
        answer = conn.getresponse()
        text = answer.read()
        if answer.status == 200 and text.strip() == b"true":
            return
        assert answer.status in (500, 503) and time.monotonic() < deadline, (answer.status, text)
        time.sleep(0.2)


def write_values(node: ClusterNode, start: int, stop: int) -> float:
    """PUT values ``start`` to ``stop - 1`` through ``node`` (``WRITERS`` clients, kept-alive
    connections); returns the seconds it took."""
    block = os.urandom(VALUE_BYTES)
    todo = list(range(start, stop))
    lock = threading.Lock()

    def writer() -> None:
        conn = http.client.HTTPConnection(node.host, node.port, timeout=60)
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                put(conn, f"/v1/kv/big/{i:06d}", value_of(i, block))
        finally:
            conn.close()

    started = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        for done in [pool.submit(writer) for _ in range(WRITERS)]:
            done.result()
    return time.monotonic() - started


def settled_rss(pid: int, seconds: float = 3.0) -> int:
    """The process's ``VmRSS`` after ``seconds`` of quiet."""
    time.sleep(seconds)
    return rss_bytes(pid)


def answer_code(node: ClusterNode, path: str) -> int:
    try:
        code, _, _ = node.call("GET", path, timeout=5)
    except OSError:
        return 0  # not listening yet
    return code


def applied(node: ClusterNode) -> int:
    status = node.status()
    return int(status["applied_index"]) if status else 0


@dataclass
class Readiness:
    """What the returning follower's ``/health/ready`` said while it caught up."""

    polls: int = 0
    ready_answers: int = 0
    # 200s while the follower was more than READY_MAX_LAG behind (counted conservatively: its
    # applied index read just *after* the answer, so a late reading only shrinks the lag)
    early: int = 0
    worst_lag_when_ready: int = 0
    first_ready_s: float | None = None

    def note(self, code: int, lag: int, since: float) -> None:
        self.polls += 1
        if code != 200:
            return
        self.ready_answers += 1
        if self.first_ready_s is None:
            self.first_ready_s = time.monotonic() - since
        if lag > READY_MAX_LAG:
            self.early += 1
            self.worst_lag_when_ready = max(self.worst_lag_when_ready, lag)


def catch_up(follower: ClusterNode, back: Callable[[], object], commit: int, timeout: float
             ) -> tuple[float, Readiness]:
    """Bring ``follower`` back and poll until it has applied ``commit``; then until it is
    ready."""
    readiness = Readiness()
    started = time.monotonic()
    back()
    caught: float | None = None
    deadline = started + timeout
    while time.monotonic() < deadline:
        code = answer_code(follower, "/health/ready")
        lag = commit - applied(follower)
        readiness.note(code, lag, started)
        if caught is None and lag <= 0:
            caught = time.monotonic() - started
        if caught is not None and code == 200:
            return caught, readiness
        time.sleep(SAMPLE_S)
    raise AssertionError(f"{follower.node_id} did not catch up and become ready in {timeout} s "
                         f"(applied {applied(follower)} of {commit})")


def term_of(node: ClusterNode) -> int:
    """The node's term while it leads; -1 when it does not."""
    status = node.status()
    return int(status["term"]) if status and status.get("state") == "Leader" else -1


def take_away(follower: ClusterNode, paused: bool) -> Callable[[], object]:
    """Stop ``follower`` (or freeze it); returns what brings it back."""
    proc = follower.proc
    assert proc is not None
    if not paused:
        follower.stop()
        return follower.launch
    proc.send_signal(signal.SIGSTOP)
    return lambda: proc.send_signal(signal.SIGCONT)


def run(root: Path, keys: int, more: int, paused: bool = False,
        env: dict[str, str] | None = None) -> dict[str, Any]:
    """The whole scenario on a new cluster under ``root``; its figures. ``paused``: the
    follower is frozen (SIGSTOP, its connections open) instead of stopped. ``env``: the
    members' settings beside the defaults."""
    how = "frozen" if paused else "stopped"
    say(f"large values ({keys:,} x 256 KiB, a follower {how} while {more} more are written"
        f"{', settings ' + str(env) if env else ''}):")
    cluster = LocalCluster(root / f"values-{time.monotonic_ns()}", size=3, env=env or {}).start()
    try:
        written = write_values(cluster.leader(), 0, keys)
        cluster.wait_converged(timeout=300)
        leader = cluster.leader()  # (measured from here on: the one the writes ended on)
        assert leader.proc is not None
        term = term_of(leader)
        steady = settled_rss(leader.proc.pid)
        rate = keys * VALUE_BYTES / MIB / written
        say(f"  {keys:,} values written in {written:.1f} s ({rate:.0f} MiB/s); "
            f"leader steady state {steady / MIB:.0f} MiB")

        follower = cluster.followers()[-1]
        back = take_away(follower, paused)
        more_s = write_values(leader, keys, keys + more)
        before = settled_rss(leader.proc.pid, 1.0)
        leader_status = leader.status()
        assert leader_status is not None
        commit = int(leader_status["commit_index"])
        say(f"  {follower.node_id} {how}; {more} more written in {more_s:.1f} s; "
            f"leader {before / MIB:.0f} MiB before it returns")

        hwm_before = peak_rss(leader.proc.pid)
        with Sampler(leader.proc.pid) as sampler:
            caught, readiness = catch_up(follower, back, commit, timeout=600)
        assert follower.proc is not None  # (restarted: VmHWM is its start and catch-up only)
        follower_peak = peak_rss(follower.proc.pid)
        # An election that the same node wins again (a term more) does not mix two leaders'
        # memory; another node leading does.
        end_term = term_of(leader)
        kept = end_term >= 0
        peak = sampler.peak
        out: dict[str, Any] = {
            "follower": "frozen (SIGSTOP)" if paused else "stopped (SIGTERM), restarted",
            "settings": env or {},
            "keys": keys,
            "more": more,
            "value_bytes": VALUE_BYTES,
            "write_s": round(written, 1),
            "leader_steady_mib": round(steady / MIB),
            "leader_before_return_mib": round(before / MIB),
            "leader_peak_catch_up_mib": round(peak / MIB),
            "leader_peak_over_steady": round(peak / steady, 2),
            "leader_hwm_before_mib": round(hwm_before / MIB),
            "leader_hwm_after_mib": round(peak_rss(leader.proc.pid) / MIB),
            "follower_peak_catch_up_mib": round(follower_peak / MIB),
            "catch_up_s": round(caught, 2),
            "ready_after_s": round(readiness.first_ready_s or 0.0, 2),
            "ready_polls": readiness.polls,
            "ready_while_behind": readiness.early,
            "worst_lag_when_ready": readiness.worst_lag_when_ready,
            "rss_samples": sampler.samples,
            "leader_kept": kept,  # False: the figures mix two leaders' memory
            "elections": max(0, end_term - term) if kept else None,
        }
    finally:
        cluster.stop()
    verdict = "met" if out["leader_peak_over_steady"] <= RSS_BAR else "NOT met"
    say(f"  catch-up {caught:.1f} s, ready after {out['ready_after_s']} s; leader peak "
        f"{out['leader_peak_catch_up_mib']} MiB = {out['leader_peak_over_steady']}x steady "
        f"(bar {RSS_BAR}x: {verdict}); follower peak {out['follower_peak_catch_up_mib']} MiB; "
        f"ready 200 while > {READY_MAX_LAG} behind: {readiness.early} of "
        f"{readiness.ready_answers} ready answers ({readiness.polls} polls)"
        + ("" if kept else "; THE LEADER CHANGED meanwhile: figures not comparable")
        + (f"; {out['elections']} election(s) the leader won again" if out["elections"] else ""))
    return out


def cases(keys: int, more: int) -> dict[str, dict[str, Any]]:
    """The ways the follower is away (``run``'s arguments):

    - ``stopped``: the issue's scenario, a member stopped and restarted from its data directory;
    - ``frozen``: a member that hangs (SIGSTOP) with its connections open, so that what the
      leader sends it piles up in socket buffers and the transport's queue;
    - ``snapshot``: stopped, and the leader snapshots and compacts its log past the follower
      meanwhile (one snapshot half-way through the ``more`` values, few trailing entries kept),
      so that the follower is sent the whole state (InstallSnapshot) instead of entries.
    """
    return {
        "stopped": {},
        "frozen": {"paused": True},
        "snapshot": {"env": {"KONSUL_RAFT_SNAPSHOT_THRESHOLD": str(keys + more // 2),
                             "KONSUL_RAFT_TRAILING_LOGS": str(more // 4)}},
    }


def measure(root: Path, keys: int, more: int, which: tuple[str, ...]) -> dict[str, Any]:
    """``run`` for each of ``which`` (names of ``cases``), then ``restore``."""
    known = cases(keys, more)
    return {
        "catch_up": {name: run(root, keys, more, **known[name]) for name in which},
        "restore": restore(root, keys),
    }


def restore(root: Path, values: int) -> dict[str, float]:
    """``bench.backup``'s restore of ``values`` x 256 KiB on one node (offline and online)."""
    say(f"restore of {values:,} x 256 KiB (bench.backup, one node):")
    figures = backup.measure(root / "restore", values, VALUE_BYTES, online=True)
    say(f"  {figures['backup_mb']:.0f} MiB backup: offline restore + start peaks at "
        f"{figures['start_peak_rss_mb']:.0f} MiB = {figures['start_peak_over_size']:.2f}x its size "
        f"(bar 1.3x); online restore peak {figures['online_peak_rss_mb']:.0f} MiB = "
        f"{figures['online_peak_rss_mb'] / figures['backup_mb']:.2f}x")
    return {k: round(v, 2) for k, v in figures.items()}
