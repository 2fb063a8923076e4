"""What the e2e scenarios observe and assert, written once for any real cluster: pure views of
the KonsulCluster and its nodes (unit-tested in tests/chart/test_e2e_checks.py), waiters with
deadlines, a background sampler of pods and leaders, and the continuous writer.

The writer is a user's client: ``konsul.client.Client`` pointed at the cluster's client Service,
with the retries it documents (503 "no leader" and unreachable nodes, about 4.5 s; a follower's
307 followed to the leader). A write it acknowledges must be on every member at the end; a write
it gives up on is a failure the scenario reports (and, while a quorum exists, must not happen).
"""

from __future__ import annotations

import itertools
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from e2e.driver import SLOW, Konsul, Pod
from konsul.client import KonsulClientError

T = TypeVar("T")


# ------------------------------------------------------------------------------ pure views


def pod_name(cluster: str, ordinal: int) -> str:
    return f"{cluster}-{ordinal}"


def condition(kc: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in ((kc or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def leader_of(statuses: dict[str, dict[str, Any] | None]) -> tuple[str, dict[str, Any]] | None:
    """The pod whose node says it leads (the highest term if two say so: a deposed leader has
    not heard yet), with its status."""
    leading = [(s.get("term", 0), name, s) for name, s in statuses.items()
               if s and s.get("state") == "Leader"]
    if not leading:
        return None
    _, name, status = max(leading, key=lambda t: (t[0], t[1]))
    return name, status


def voters_of(leader_status: dict[str, Any]) -> list[str]:
    return sorted(p["id"] for p in leader_status.get("peers") or [] if p.get("voter"))


def non_voters_of(leader_status: dict[str, Any]) -> list[str]:
    return sorted(p["id"] for p in leader_status.get("peers") or [] if not p.get("voter"))


def is_converged(kc: dict[str, Any] | None, pods: dict[str, Pod],
                 statuses: dict[str, dict[str, Any] | None], name: str, replicas: int) -> bool:
    """Available and not Progressing, ``readyReplicas`` = replicas, the leader's configuration
    has exactly one voter per wanted pod, and those pods (and only those) exist and are ready."""
    wanted = [pod_name(name, i) for i in range(replicas)]
    found = leader_of(statuses)
    return (
        condition(kc, "Available").get("status") == "True"
        and condition(kc, "Progressing").get("status") == "False"
        and ((kc or {}).get("status") or {}).get("readyReplicas") == replicas
        and found is not None
        and voters_of(found[1]) == wanted
        and not non_voters_of(found[1])
        and sorted(pods) == wanted
        and all(p.ready for p in pods.values())
    )


def leader_changes(samples: list[str | None]) -> int:
    """Changes between successive known leaders (None = nobody answered: not a change)."""
    known = [s for s in samples if s is not None]
    return sum(1 for a, b in itertools.pairwise(known) if a != b)


def replacement_order(before: dict[str, str], samples: list[dict[str, str]]) -> list[str]:
    """Pods in the order they got a new uid, from successive {pod: uid} samples."""
    order: list[str] = []
    for sample in samples:
        for pod, uid in sorted(sample.items()):
            if pod in before and uid != before[pod] and pod not in order:
                order.append(pod)
    return order


def count_events(events: list[dict[str, Any]], reason: str) -> int:
    """Events of one reason, counting a series (``count``) as several."""
    return sum(int(e.get("count") or 1) for e in events if e.get("reason") == reason)


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without one of ``times`` in it."""
    inside = sorted(t for t in times if start <= t <= end)
    return max((b - a for a, b in itertools.pairwise([start, *inside, end])), default=0.0)


# ------------------------------------------------------------------------------ waiting


def wait_for(konsul: Konsul, probe: Callable[[], T | None], seconds: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the cluster's diagnostics
    after ``seconds`` (times KONSUL_E2E_SLOW)."""
    deadline = time.monotonic() + seconds * SLOW
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {seconds * SLOW:.0f}s waiting for {what} "
                         f"(last: {last!r})\n{konsul.diagnostics()}")


def converged(konsul: Konsul, replicas: int) -> bool:
    pods = konsul.pods()
    return is_converged(konsul.kc(), pods, konsul.statuses(pods), konsul.name, replicas)


def wait_converged(konsul: Konsul, replicas: int, seconds: float = 120) -> float:
    """Seconds until converged."""
    started = time.monotonic()
    wait_for(konsul, lambda: converged(konsul, replicas), seconds,
             f"{konsul.name}: {replicas} converged members")
    return time.monotonic() - started


def current_leader(konsul: Konsul) -> str | None:
    found = leader_of(konsul.statuses())
    return found[0] if found else None


def wait_claims(konsul: Konsul, replicas: int, seconds: float = 60) -> None:
    wanted = {f"data-{pod_name(konsul.name, i)}" for i in range(replicas)}
    wait_for(konsul, lambda: set(konsul.claims()) == wanted, seconds,
             f"exactly the claims {sorted(wanted)}")


# ------------------------------------------------------------------------------ sampling


@dataclass
class Sampler:
    """Samples, in the background, pod uids, the leader and the leader's configuration."""

    konsul: Konsul
    interval: float = 0.2
    uids: list[dict[str, str]] = field(default_factory=list)
    leaders: list[str | None] = field(default_factory=list)
    configurations: list[tuple[list[str], list[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pods = self.konsul.pods()
        self.uids.append({name: p.uid for name, p in pods.items()})
        found = leader_of(self.konsul.statuses(pods))
        self.leaders.append(found[0] if found else None)
        if found:
            self.configurations.append((voters_of(found[1]), non_voters_of(found[1])))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a sample lost to a transient API error is not a fault
                print(f"sampler: {exc!r}")
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


# ------------------------------------------------------------------------------ writing


@dataclass(frozen=True)
class Ack:
    key: str
    value: str
    at: float


@dataclass
class Writer:
    """``writers`` threads, each putting ``<prefix><n>-<seq>`` through one ``Client`` of the
    client Service, about ``rate`` writes a second each, until stopped."""

    konsul: Konsul = field(repr=False)
    prefix: str
    writers: int = 2
    rate: float = 10.0
    acks: list[Ack] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Writer:
        self.started = time.monotonic()
        for n in range(self.writers):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True,
                                      name=f"writer-{n}")
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self.stopped = time.monotonic()

    def _run(self, n: int) -> None:
        with self.konsul.client(timeout=5.0) as client:
            for seq in itertools.count():
                if self._stop.is_set():
                    return
                key, value = f"{self.prefix}{n}-{seq:06d}", str(seq)
                try:
                    client.kv_put(key, value)
                except KonsulClientError as exc:
                    with self._lock:
                        self.failures.append(f"{key}: {exc}")
                else:
                    with self._lock:
                        self.acks.append(Ack(key, value, time.monotonic()))
                self._stop.wait(1 / self.rate)

    def wait_acks(self, count: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds * SLOW
        while len(self.acks) < count:
            assert time.monotonic() < deadline, (
                f"only {len(self.acks)} of {count} writes acknowledged; failures: "
                f"{self.failures[-3:]}")
            time.sleep(0.2)

    def expected(self) -> dict[str, str]:
        with self._lock:
            return {a.key: a.value for a in self.acks}

    def longest_gap(self, start: float | None = None, end: float | None = None) -> float:
        with self._lock:
            times = [a.at for a in self.acks]
        return longest_gap(times, start or self.started, end or self.stopped or time.monotonic())


def text(url: str) -> str | None:
    """A plain-text GET (``/metrics``); None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: str = resp.read().decode()
            return body
    except OSError:
        return None


def kv_snapshot(konsul: Konsul, url: str, prefix: str) -> dict[str, str]:
    """Every key under ``prefix`` on one member, read with ``?consistent``."""
    code, _, body = konsul.http("GET", f"{url}/kv/?prefix={prefix}&consistent", timeout=20)
    assert code == 200, f"{url} consistent list -> {code} {body}"
    return {e["key"]: e["value"] for e in body}


@dataclass
class Ledger:
    """Every write acknowledged so far, in any scenario: each later scenario checks that all of
    them are still there, the same on every member."""

    konsul: Konsul
    writers: list[Writer] = field(default_factory=list)

    def writer(self, scenario: str) -> Writer:
        writer = Writer(self.konsul, prefix=f"e2e/{scenario}/")
        self.writers.append(writer)
        return writer

    def check(self) -> int:
        """Every acknowledged write of every writer so far on every member; how many."""
        pods = self.konsul.pods()
        urls = [self.konsul.node_url(p, pods) for p in sorted(pods)]
        assert all(urls), f"a member has no IP: {pods}"
        total = 0
        for writer in self.writers:
            expected = writer.expected()
            for url in urls:
                assert url is not None
                stored = kv_snapshot(self.konsul, url, writer.prefix)
                missing = [k for k, v in expected.items() if stored.get(k) != v]
                assert not missing, (f"{url} lacks {len(missing)} acknowledged writes of "
                                     f"{writer.prefix}, e.g. {missing[:5]}")
            total += len(expected)
        return total


# ------------------------------------------------------------------------------ figures

FIGURES: list[tuple[str, str]] = []   # printed at the end of the run (e2e/conftest.py)


def record(what: str, value: float | int | str, unit: str = "s") -> None:
    shown = f"{value:.1f} {unit}" if isinstance(value, float) else f"{value} {unit}".strip()
    FIGURES.append((what, shown))
