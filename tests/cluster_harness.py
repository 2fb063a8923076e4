"""Local Konsul clusters of real processes for tests.

Each node gets its own loopback address with the guide's ports (HTTP 8500, Raft 7000). Tests
running at the same time on one machine must not collide, so every cluster takes a /24 of
127.0.0.0/8 that nobody listens on (checked by binding), e.g. 127.83.17.1, .2, .3 ...

    cluster = LocalCluster(tmp_path, size=3).start()   # node1 bootstraps, the others join
    leader = cluster.leader()
    cluster.nodes[1].kill()
"""

from __future__ import annotations

import collections
import itertools
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.certs import CertDir
from tests.processes import KonsulProcess, http, wait_until

HTTP_PORT, RAFT_PORT = 8500, 7000


def _subnet_is_free(prefix: str) -> bool:
    for n in range(1, 10):
        for port in (HTTP_PORT, RAFT_PORT):
            with socket.socket() as s:
                try:
                    s.bind((f"{prefix}.{n}", port))
                except OSError:
                    return False
    return True


def free_subnet() -> str:
    """A 127.a.b prefix whose first nine addresses have the guide's ports free."""
    rng = random.Random()
    for _ in range(100):
        prefix = f"127.{rng.randint(10, 250)}.{rng.randint(1, 250)}"
        if _subnet_is_free(prefix):
            return prefix
    raise RuntimeError("no free loopback /24 found")


@dataclass
class ClusterNode(KonsulProcess):
    node_id: str = ""

    @property
    def raft_addr(self) -> str:
        return f"{self.host}:{RAFT_PORT}"

    @property
    def http_addr(self) -> str:
        return f"{self.host}:{self.port}"

    def status(self) -> dict[str, Any] | None:
        try:
            code, _, body = self.call("GET", "/cluster/status", timeout=2)
        except OSError:
            return None
        return body if code == 200 else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalCluster:
    root: Path
    size: int = 3
    env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=free_subnet)
    nodes: list[ClusterNode] = field(default_factory=list)
    # TLS on the API and between members: each node gets a certificate for its address.
    certs: CertDir | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (a token)

    def __post_init__(self) -> None:
        for n in range(1, self.size + 1):
            self.nodes.append(self.make_node(n))

    def make_node(self, n: int, bootstrap: bool = False) -> ClusterNode:
        host = f"{self.prefix}.{n}"
        node_id = f"node{n}"
        env = {
            "KONSUL_RAFT_ENABLED": "true",
            "KONSUL_RAFT_NODE_ID": node_id,
            "KONSUL_RAFT_BIND_ADDR": f"{host}:{RAFT_PORT}",
            "KONSUL_RAFT_ADVERTISE_ADDR": f"{host}:{RAFT_PORT}",
            "KONSUL_RAFT_DATA_DIR": str(self.root / node_id / "raft"),
            "KONSUL_RAFT_BOOTSTRAP": "true" if bootstrap or n == 1 else "false",
            **self.env,
        }
        context = None
        if self.certs is not None:
            env.update(self.certs.member_env(node_id, [host]))
            context = self.certs.client_context()
        return ClusterNode(
            data_dir=self.root / node_id,
            host=host,
            port=HTTP_PORT,
            env=env,
            node_id=node_id,
            ready_path="/health/live",
            ssl_context=context,
            headers=dict(self.headers),
        )

    # ---------------------------------------------------------------------------- lifecycle

    def start(self) -> LocalCluster:
        """Start every node, bootstrap node1, join the others as the guide's quick start does."""
        first = self.nodes[0]
        first.start()
        wait_until(lambda: self._ready(first), 20, "node1 to lead")
        # With ACLs, the leader creates the token the headers carry soon after it leads.
        wait_until(lambda: first.status() is not None, 20, "node1 to accept our headers")
        for node in self.nodes[1:]:
            node.start()
            self.join(node)
        self.wait_converged()
        return self

    def join(self, node: ClusterNode, via: ClusterNode | None = None) -> dict[str, Any]:
        target = via or self.leader()
        code, _, body = target.call(
            "POST", "/cluster/join", {"node_id": node.node_id, "address": node.raft_addr},
            timeout=40,
        )
        assert code == 200, f"join {node.node_id} -> {code} {body}"
        return dict(body)

    def add_node(self) -> ClusterNode:
        node = self.make_node(len(self.nodes) + 1)
        node.env["KONSUL_RAFT_BOOTSTRAP"] = "false"
        self.nodes.append(node)
        node.start()
        self.join(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    # -------------------------------------------------------------------------- observing

    @staticmethod
    def _ready(node: ClusterNode) -> bool:
        try:
            code, _, _ = node.call("GET", "/health/ready", timeout=1)
        except OSError:
            return False
        return code == 200

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive()]

    def leader(self, timeout: float = 10.0) -> ClusterNode:
        """The node that says it leads, once every running node that answers agrees."""

        def agreed() -> ClusterNode | None:
            leaders: set[str] = set()
            for node in self.running():
                status = node.status()
                if status is not None and status.get("leader_id"):
                    leaders.add(status["leader_id"])
            if len(leaders) != 1:
                return None
            (leader_id,) = leaders
            node = next((n for n in self.running() if n.node_id == leader_id), None)
            status = node.status() if node else None
            return node if status and status["state"] == "Leader" else None

        found: ClusterNode = wait_until(agreed, timeout, "one agreed leader")
        return found

    def followers(self) -> list[ClusterNode]:
        leader = self.leader()
        return [n for n in self.running() if n is not leader]

    def wait_converged(self, timeout: float = 20.0) -> None:
        """Every running node knows the leader and has applied the leader's commit index."""

        def converged() -> bool:
            leader = self.leader()
            target = leader.status()
            if target is None:
                return False
            for node in self.running():
                status = node.status()
                if status is None or status["applied_index"] < target["commit_index"]:
                    return False
            return True

        wait_until(converged, timeout, "all running nodes to catch up")

    def voters(self) -> list[str]:
        status = self.leader().status() or {}
        return sorted(p["id"] for p in status.get("peers", []) if p["voter"])


def time_until_write_accepted(nodes: list[ClusterNode], key: str, timeout: float = 10.0) -> float:
    """Seconds until some node in ``nodes`` accepts a write to ``key`` (following no redirects:
    the first node that is leader answers 200)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for node in nodes:
            try:
                code, _, _ = node.call("PUT", f"/kv/{key}", {"value": "x"}, timeout=0.5)
            except OSError:
                continue
            if code == 200:
                return time.monotonic() - started
        time.sleep(0.005)
    raise AssertionError(f"no write accepted within {timeout}s")


# ------------------------------------------------------------------ fault-test helpers
# Used by tests/cluster: a write load that records what was acknowledged and when, checks that
# nothing acknowledged is lost, and a parser for the Prometheus text of /metrics.

HttpFn = Callable[..., tuple[int, dict[str, str], Any]]


@dataclass(frozen=True)
class Ack:
    key: str
    value: str
    at: float  # time.monotonic() when the 200 arrived
    node: str  # URL of the node that answered
    sent: float = 0.0  # time.monotonic() when the request was sent


@dataclass
class WriteLoad:
    """Background writers, each putting ``<prefix><writer>-<seq>`` = ``<seq>`` in a loop.

    A writer talks to one node at a time and follows no client library: on a 307 it moves to the
    leader the body names, on a refused connection or ``503 no leader`` it tries the next node, so
    the figures measure the cluster rather than a client's backoff. A write whose outcome is
    unknown (timeout, reset mid-request, ``503 unavailable``) is counted as ``uncertain`` and never
    checked; every 200 is an ``Ack`` that must survive.
    """

    urls: Callable[[], list[str]]
    writers: int = 2
    prefix: str = "load/"
    timeout: float = 1.0
    http_fn: HttpFn = http
    acks: list[Ack] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    refusals: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WriteLoad:
        for w in range(self.writers):
            t = threading.Thread(target=self._run, args=(w,), daemon=True, name=f"load-{w}")
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> WriteLoad:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self

    def __enter__(self) -> WriteLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, writer: int) -> None:
        seq, target = 0, 0
        while not self._stop.is_set():
            urls = self.urls()
            url = urls[target % len(urls)]
            key = f"{self.prefix}{writer}-{seq:06d}"
            sent = time.monotonic()
            try:
                code, _, body = self.http_fn(
                    "PUT", f"{url}/kv/{key}", {"value": str(seq)}, timeout=self.timeout
                )
            except OSError as exc:
                # urllib wraps a refused connect in URLError: nothing reached the node.
                if not isinstance(getattr(exc, "reason", exc), ConnectionRefusedError):
                    # A timeout or a reset mid-request: the write may or may not have committed.
                    with self._lock:
                        self.uncertain.append(key)
                        self.outcomes[type(exc).__name__] += 1
                    seq, target = seq + 1, target + 1
                    continue
                code, body = 0, None
            with self._lock:
                error = body.get("error") if isinstance(body, dict) else None
                self.outcomes[f"{code} {error}" if code != 200 else "200"] += 1
            if code == 200:
                with self._lock:
                    self.acks.append(Ack(key, str(seq), time.monotonic(), url, sent))
                seq += 1
                continue
            if code == 503 and isinstance(body, dict) and body.get("error") != "no leader":
                with self._lock:
                    self.uncertain.append(key)
                seq += 1
            with self._lock:
                self.refusals += 1
            redirected = code == 307 and isinstance(body, dict)
            leader = body.get("leader_http_addr") if redirected else None
            leader_url = f"{url.partition('://')[0]}://{leader}"
            if leader and leader_url in urls:
                target = urls.index(leader_url)
            else:
                target += 1
                time.sleep(0.01)

    # ------------------------------------------------------------------------ figures

    def acked_since(self, moment: float) -> list[Ack]:
        with self._lock:
            return [a for a in self.acks if a.at >= moment]

    def first_ack_after(self, moment: float, timeout: float = 15.0) -> float:
        """Seconds from ``moment`` until the first acknowledgement of a write sent after it (a
        write in flight at ``moment`` may have committed before it)."""

        def sent_since() -> list[Ack]:
            with self._lock:
                return [a for a in self.acks if a.sent >= moment]

        found: list[Ack] = wait_until(sent_since, timeout, "a write sent and acknowledged")
        return min(a.at for a in found) - moment

    def longest_gap(self, since: float | None = None) -> float:
        """The longest stretch with no acknowledged write (per the whole load, not per writer)."""
        with self._lock:
            times = sorted(a.at for a in self.acks if since is None or a.at >= since)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def server_errors(self) -> dict[str, int]:
        """Answers that must never happen, whatever the fault: 5xx other than 503."""
        with self._lock:
            return {o: n for o, n in self.outcomes.items() if o[:1] == "5" and o[:3] != "503"}

    def wait_acks(self, count: int, timeout: float = 20.0) -> None:
        wait_until(lambda: len(self.acks) >= count, timeout, f"{count} acknowledged writes")

    def expected(self) -> dict[str, str]:
        with self._lock:
            return {a.key: a.value for a in self.acks}


def kv_snapshot(
    url: str, prefix: str, consistent: bool = True, http_fn: HttpFn = http
) -> dict[str, str]:
    """Every key under ``prefix`` on one node, read with ``?consistent`` (linearizable)."""
    flag = "&consistent" if consistent else ""
    code, _, body = http_fn("GET", f"{url}/kv/?prefix={prefix}{flag}", timeout=10)
    assert code == 200, f"{url} consistent list -> {code} {body}"
    return {e["key"]: e["value"] for e in body}


def assert_no_acked_write_lost(
    urls: list[str], load: WriteLoad, http_fn: HttpFn = http
) -> int:
    """Every acknowledged write is present, with its value, on every node in ``urls`` (and the
    load never got a 500 on the way)."""
    assert not load.server_errors(), f"server errors under load: {load.outcomes}"
    expected = load.expected()
    assert expected, "the load acknowledged no write at all"
    for url in urls:
        stored = kv_snapshot(url, load.prefix, http_fn=http_fn)
        missing = [k for k, v in expected.items() if stored.get(k) != v]
        assert not missing, f"{url} lost {len(missing)} acknowledged writes, e.g. {missing[:5]}"
    return len(expected)


METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def metrics_of(url: str) -> tuple[dict[str, float], dict[str, str]]:
    """(series → value, metric name → type) of one node's /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values, types
