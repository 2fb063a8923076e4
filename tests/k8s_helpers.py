"""KonsulCluster scenarios and their checks, written once for any Kubernetes: the kind e2e suite
(e2e/) runs them on a real cluster, tests/chart/test_scenarios_kmock.py runs the very same
functions against kmock with real ``konsul`` processes, so every waiter and checker the e2e relies
on is exercised by ``make test`` even where no Docker engine exists.

A backend implements ``Driver`` (a few primitives: read the KonsulCluster, its pods and each
node's ``/cluster/status``, delete a pod or a claim, take pods down and back); everything else
(convergence, leader tracking, restart order, no acknowledged write lost, bootstrapped once)
lives here.

Scenarios follow ../shared/reference/operator-practices.md and run in order on one cluster,
each starting from the converged state the previous one left:

    create -> write -> scale 3->5->3 -> leader pod deleted -> rolling restart under writes ->
    follower pod and its PVC deleted -> majority lost and back -> cluster deleted
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.cluster_harness import HttpFn, WriteLoad, assert_no_acked_write_lost, kv_snapshot
from tests.processes import wait_until


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str  # a new uid means a new pod (deleted and recreated)
    ready: bool


class Driver(Protocol):
    """What a backend supplies. ``name`` is the KonsulCluster's name; ``slow`` multiplies every
    deadline (a real cluster pulls, schedules and binds volumes; kmock starts processes)."""

    name: str
    slow: float
    http_fn: HttpFn

    def create_cluster(self, replicas: int) -> None: ...
    def kc(self) -> dict[str, Any] | None: ...
    def pods(self) -> dict[str, PodState]: ...
    def node_status(self, pod: str) -> dict[str, Any] | None: ...
    def node_url(self, pod: str) -> str: ...
    def scale(self, replicas: int) -> None: ...
    def set_image(self, image: str) -> None: ...
    def image(self) -> str: ...
    def delete_pod(self, pod: str) -> None: ...
    def delete_pod_and_claim(self, pod: str) -> None: ...
    def claims(self) -> list[str]: ...
    def hold(self, pods: list[str]) -> None: ...
    def release(self, pods: list[str]) -> None: ...
    def events(self) -> list[dict[str, Any]]: ...
    def owned(self) -> list[str]: ...
    def delete_cluster(self) -> None: ...
    def diagnostics(self) -> str: ...


# ------------------------------------------------------------------------------ pure views


def pod_name(cluster: str, ordinal: int) -> str:
    return f"{cluster}-{ordinal}"


def claim_name(cluster: str, ordinal: int) -> str:
    """The StatefulSet's claim of one ordinal (volumeClaimTemplate "data")."""
    return f"data-{cluster}-{ordinal}"


def condition(kc: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in ((kc or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def leader_of(statuses: dict[str, dict[str, Any] | None]) -> tuple[str, dict[str, Any]] | None:
    """The pod whose node says it leads (the lowest name if two say so: a stale one has not
    heard yet), with its status."""
    for name in sorted(statuses):
        status = statuses[name]
        if status and status.get("state") == "Leader":
            return name, status
    return None


def voters_of(leader_status: dict[str, Any]) -> list[str]:
    return sorted(p["id"] for p in leader_status.get("peers") or [] if p.get("voter"))


def is_converged(kc: dict[str, Any] | None, pods: dict[str, PodState],
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
    """Events of one reason, counting kubectl/kopf's series (``count``) as several."""
    return sum(int(e.get("count") or 1) for e in events if e.get("reason") == reason)


# ------------------------------------------------------------------------------ observing


def statuses(driver: Driver, pods: dict[str, PodState] | None = None
             ) -> dict[str, dict[str, Any] | None]:
    return {name: driver.node_status(name) for name in sorted(pods or driver.pods())}


def current_leader(driver: Driver) -> str | None:
    found = leader_of(statuses(driver))
    return found[0] if found else None


def converged(driver: Driver, replicas: int) -> bool:
    pods = driver.pods()
    return is_converged(driver.kc(), pods, statuses(driver, pods), driver.name, replicas)


def wait_for(driver: Driver, predicate: Callable[[], Any], seconds: float, what: str) -> Any:
    """``wait_until`` with the backend's slowness, printing its diagnostics on a timeout."""
    try:
        return wait_until(predicate, seconds * driver.slow, what, interval=0.2)
    except AssertionError:
        print(driver.diagnostics())
        raise


def wait_converged(driver: Driver, replicas: int, seconds: float = 90) -> None:
    wait_for(driver, lambda: converged(driver, replicas), seconds,
             f"{driver.name}: {replicas} converged members")


def wait_claims(driver: Driver, replicas: int, seconds: float = 60) -> None:
    wanted = {claim_name(driver.name, i) for i in range(replicas)}
    wait_for(driver, lambda: set(driver.claims()) == wanted, seconds,
             f"exactly the claims {sorted(wanted)}")


def assert_holds(driver: Driver, predicate: Callable[[], bool], seconds: float,
                 what: str) -> None:
    """``predicate`` stays true for the whole of ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds * driver.slow
    while time.monotonic() < deadline:
        assert predicate(), f"{what}: broken"
        time.sleep(0.5)


def wait_condition(driver: Driver, kind: str, status: str, seconds: float = 60,
                   reason: str | None = None) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        cond = condition(driver.kc(), kind)
        ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
        return cond if ok else None

    found: dict[str, Any] = wait_for(driver, matches, seconds, f"{kind}={status} ({reason})")
    return found


@dataclass
class Sampler:
    """Samples pod uids and the leader in the background (a rolling restart's history)."""

    driver: Driver
    interval: float = 0.25
    uids: list[dict[str, str]] = field(default_factory=list)
    leaders: list[str | None] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pods = self.driver.pods()
        self.uids.append({name: p.uid for name, p in pods.items()})
        found = leader_of(statuses(self.driver, pods))
        self.leaders.append(found[0] if found else None)

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


@dataclass
class Ledger:
    """Every write acknowledged so far, in any scenario: each later scenario checks that all of
    them are still there (and the same on every member)."""

    driver: Driver
    loads: list[WriteLoad] = field(default_factory=list)

    _urls: list[str] = field(default_factory=list)
    _urls_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def urls(self) -> list[str]:
        """The members' URLs, re-listed at most once a second (a writer asks before every
        write; listing pods is an API call, on kind a kubectl run)."""
        with self._lock:
            if not self._urls or time.monotonic() - self._urls_at > 1.0:
                fresh = [self.driver.node_url(p) for p in sorted(self.driver.pods())]
                self._urls = fresh or self._urls or [
                    self.driver.node_url(pod_name(self.driver.name, 0))]
                self._urls_at = time.monotonic()
            return list(self._urls)

    def load(self, writers: int = 2) -> WriteLoad:
        load = WriteLoad(urls=self.urls, writers=writers, prefix=f"e2e{len(self.loads)}/",
                         timeout=3.0, http_fn=self.driver.http_fn)
        self.loads.append(load)
        return load

    def check(self) -> int:
        """Every acknowledged write of every load so far, on every member; the count."""
        urls = [self.driver.node_url(p) for p in sorted(self.driver.pods())]
        return sum(assert_no_acked_write_lost(urls, load, self.driver.http_fn)
                   for load in self.loads)


# ------------------------------------------------------------------------------ scenarios


def scenario_create(driver: Driver, replicas: int = 3) -> None:
    """Create -> Available: pod-0 bootstrapped once, the others joined."""
    driver.create_cluster(replicas)
    wait_converged(driver, replicas, seconds=180)
    status = (driver.kc() or {}).get("status") or {}
    assert status.get("bootstrapped") is True, status
    assert status.get("leader") in [pod_name(driver.name, i) for i in range(replicas)], status
    assert count_events(driver.events(), "Bootstrap") == 1


def scenario_write(ledger: Ledger, count: int = 200) -> None:
    """Writes through every member (307s followed to the leader) are on every member."""
    with ledger.load() as load:
        load.wait_acks(count, timeout=60 * ledger.driver.slow)
    assert ledger.check() >= count


def scenario_scale(driver: Driver, ledger: Ledger, sizes: tuple[int, ...] = (5, 3)) -> None:
    """3 -> 5 -> 3: peers, pods and the PVCs of removed ordinals follow; data stays."""
    for replicas in sizes:
        driver.scale(replicas)
        wait_converged(driver, replicas, seconds=60 + 30 * replicas)
        wait_claims(driver, replicas)
        ledger.check()
    assert count_events(driver.events(), "Bootstrap") == 1


def scenario_leader_pod_deleted(driver: Driver, ledger: Ledger, replicas: int = 3) -> None:
    """The leader's pod deleted: another member leads, the pod comes back and rejoins."""
    old = wait_for(driver, lambda: current_leader(driver), 30, "a leader")
    uid = driver.pods()[old].uid
    driver.delete_pod(old)
    wait_for(driver, lambda: (current_leader(driver) or old) != old, 60, "a new leader")
    wait_for(driver, lambda: (p := driver.pods().get(old)) is not None and p.uid != uid, 120,
             f"{old} recreated")
    wait_converged(driver, replicas, seconds=120)
    ledger.check()


def scenario_rolling_restart(driver: Driver, ledger: Ledger, image: str,
                             replicas: int = 3) -> None:
    """An image change under write load: every pod replaced once, the leader last, at most one
    leadership change, no acknowledged write lost."""
    before = {name: p.uid for name, p in driver.pods().items()}
    leader = wait_for(driver, lambda: current_leader(driver), 30, "a leader")
    with Sampler(driver) as sampler, ledger.load() as load:
        load.wait_acks(20, timeout=60 * driver.slow)
        driver.set_image(image)

        def restarted() -> bool:
            pods = driver.pods()
            status = (driver.kc() or {}).get("status") or {}
            return (all(pods.get(n) is not None and pods[n].uid != u for n, u in before.items())
                    and status.get("currentImage") == image and converged(driver, replicas))

        wait_for(driver, restarted, 120 + 60 * replicas, f"every pod restarted on {image}")
        sampler.sample()
        load.wait_acks(len(load.acks) + 20, timeout=60 * driver.slow)
    assert driver.image() == image
    order = replacement_order(before, sampler.uids)
    assert sorted(order) == sorted(before), order
    assert order[-1] == leader, f"leader {leader} not restarted last: {order}"
    assert leader_changes(sampler.leaders) <= 1, sampler.leaders
    ledger.check()


def scenario_follower_and_claim_lost(driver: Driver, ledger: Ledger, replicas: int = 3) -> None:
    """A follower's pod and its PVC deleted: it comes back empty, is joined again (never
    bootstrapped) and catches up."""
    leader = wait_for(driver, lambda: current_leader(driver), 30, "a leader")
    follower = max(n for n in driver.pods() if n != leader)  # a high ordinal, not the leader
    uid = driver.pods()[follower].uid
    driver.delete_pod_and_claim(follower)
    wait_for(driver, lambda: (p := driver.pods().get(follower)) is not None and p.uid != uid,
             120, f"{follower} recreated")
    wait_converged(driver, replicas, seconds=150)
    assert count_events(driver.events(), "Bootstrap") == 1
    assert ((driver.kc() or {}).get("status") or {}).get("bootstrapped") is True
    expected: dict[str, str] = {}
    for load in ledger.loads:
        expected.update(load.expected())
    stored: dict[str, str] = {}
    for load in ledger.loads:
        stored.update(kv_snapshot(driver.node_url(follower), load.prefix,
                                  http_fn=driver.http_fn))
    assert stored == expected, f"{follower} did not catch up: {len(stored)}/{len(expected)}"


def scenario_majority_lost(driver: Driver, ledger: Ledger, replicas: int = 3) -> None:
    """A majority down: the operator reports Degraded (QuorumLost) and replaces nobody; the
    members come back and it is Available again."""
    lost = [pod_name(driver.name, i) for i in range(replicas // 2 + 1)]
    survivors = {n: p.uid for n, p in driver.pods().items() if n not in lost}
    driver.hold(lost)
    try:
        wait_condition(driver, "Degraded", "True", seconds=90, reason="QuorumLost")
        assert condition(driver.kc(), "Available").get("status") == "False"
        # Acting with quorum lost could only make it worse: no survivor is touched.
        assert_holds(driver, lambda: {n: p.uid for n, p in driver.pods().items()
                                      if n in survivors} == survivors,
                     10, "no survivor replaced while the quorum is lost")
    finally:
        driver.release(lost)
    wait_converged(driver, replicas, seconds=180)
    wait_condition(driver, "Degraded", "False", seconds=60)
    ledger.check()


def scenario_delete(driver: Driver, keeps_claims: bool = True) -> None:
    """Deleting the KonsulCluster removes everything it owns; the PVCs stay unless asked."""
    claims = driver.claims()
    driver.delete_cluster()
    wait_for(driver, lambda: driver.kc() is None, 60, "the KonsulCluster gone")
    wait_for(driver, lambda: not driver.owned() and not driver.pods(), 120,
             "owned objects and pods gone")
    if keeps_claims:
        assert sorted(driver.claims()) == sorted(claims)
