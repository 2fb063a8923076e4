"""The guide's Docker Compose deployment, run with podman-compose on the image: its join steps,
``/cluster/status`` as the guide shows it, what a client outside the compose network does with a
follower's 307, writes through every published port, the guide's rolling restart, leader
containers killed, and a teardown that leaves nothing behind.

One deployment for the module (the file's ports are fixed: 8501-8503 and 7001-7003 on the
host), driven by scripts/image/compose.sh as `make compose-up` drives it; the tests run in order.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from containers.podman import podman, podman_env
from tests.cluster_harness import WriteLoad, assert_no_acked_write_lost
from tests.processes import REPO, http, wait_until

PROJECT = "konsul-test"
PORTS = {"node1": 8501, "node2": 8502, "node3": 8503}  # the guide's published HTTP ports
URLS = {node: f"http://127.0.0.1:{port}" for node, port in PORTS.items()}
CONTAINERS = {f"node{n}": f"{PROJECT}_konsul{n}_1" for n in (1, 2, 3)}
GUIDE_STATUS_KEYS = {"node_id", "state", "leader_id", "leader_addr", "peers", "commit_index",
                     "applied_index", "last_index", "fsm_pending"}
failover_seconds: list[float] = []


def compose(command: str, *, forward: bool = True) -> str:
    env = {**os.environ, "COMPOSE_PROJECT": PROJECT,
           "KONSUL_FORWARD_WRITES": "true" if forward else "false"}
    done = subprocess.run([str(REPO / "scripts/image/compose.sh"), command], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"compose.sh {command}: {done.stdout}{done.stderr}"
    return done.stdout


def leftovers() -> list[str]:
    label = f"label=io.podman.compose.project={PROJECT}"
    return (podman("ps", "-aq", "--filter", label).split()
            + podman("volume", "ls", "-q", "--filter", label).split()
            + podman("network", "ls", "-q", "--filter", label).split())


def status(node: str) -> dict[str, Any] | None:
    try:
        code, _, body = http("GET", URLS[node] + "/cluster/status", timeout=2)
    except OSError:
        return None
    return body if code == 200 else None


def wait_converged(timeout: float = 30) -> str:
    """The leader the three containers name, once each has applied what that leader had
    committed when they were first seen to agree on it.

    (Not "until every applied index equals the greatest commit index": under the rolling
    restart's write load the leader commits again between two status reads, and a follower
    learns a commit only with the next append, so that moment may never come; the guide's
    rolling restart then timed out with a healthy cluster.)"""
    agreed: dict[str, int] = {}  # the leader they agree on -> its commit index when first seen

    def caught_up() -> str | None:
        statuses = [status(n) for n in PORTS]
        leaders = {s["leader_id"] if s else None for s in statuses}
        if len(leaders) != 1 or None in leaders:
            agreed.clear()
            return None
        (leader,) = leaders
        if leader not in agreed:
            agreed.clear()
            agreed[leader] = max(s["commit_index"] for s in statuses if s)
        return leader if all(s and s["applied_index"] >= agreed[leader] for s in statuses) else None

    try:
        leader: str = wait_until(caught_up, timeout, "the three containers to agree", 0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis()}") from None
    return leader


def diagnosis() -> str:
    """Each container's view of the cluster and its last log lines."""
    lines = []
    for node, name in CONTAINERS.items():
        s = status(node)
        view = s and {k: s[k] for k in ("state", "term", "leader_id", "commit_index",
                                        "applied_index") if k in s}
        lines.append(f"--- {node}: {view}\n{container_log(name)}")
    return "\n".join(lines)


def put(node: str, key: str, value: str) -> tuple[int, dict[str, str], Any]:
    return http("PUT", f"{URLS[node]}/kv/{key}", {"value": value}, timeout=5)


def value_everywhere(key: str, value: str) -> None:
    def everywhere() -> bool:
        for url in URLS.values():
            try:
                code, _, body = http("GET", f"{url}/kv/{key}", timeout=2)
            except OSError:
                return False
            if code != 200 or body["value"] != value:
                return False
        return True

    wait_until(everywhere, 10, f"{key}={value} on every node", 0.05)


@pytest.fixture(scope="module")
def deployment() -> Iterator[str]:
    compose("down")  # a deployment a failed run left behind
    # The guide's file alone: `podman-compose up -d`, then its two joins through konsul1.
    yield compose("up", forward=False)
    compose("down")


def test_the_guides_join_steps_make_three_voters(deployment: str) -> None:
    assert '"joined":"node2"' in deployment and '"joined":"node3"' in deployment
    body = status("node1")
    assert body is not None and body.keys() >= GUIDE_STATUS_KEYS
    assert (body["node_id"], body["state"], body["leader_id"]) == ("node1", "Leader", "node1")
    assert body["leader_addr"] == "konsul1:7000"
    assert [(p["id"], p["address"], p["voter"]) for p in body["peers"]] == [
        (f"node{n}", f"konsul{n}:7000", True) for n in (1, 2, 3)
    ]
    assert wait_converged() == "node1"


def test_a_follower_307_names_the_leader_as_the_compose_network_knows_it(
    deployment: str,
) -> None:
    """Outside the network, `konsul1` resolves to nothing: the client maps the leader_id of the
    307's body to that node's published port (docs/clustering.md, "Docker Compose")."""
    code, headers, body = put("node2", "guide/redirected", "v1")
    assert code == 307
    assert headers["Location"] == "http://konsul1:8500/kv/guide/redirected"
    assert (body["leader_id"], body["leader_addr"]) == ("node1", "konsul1:7000")
    code, _, _ = put(body["leader_id"], "guide/redirected", "v1")
    assert code == 200
    value_everywhere("guide/redirected", "v1")


def test_with_forwarding_every_published_port_takes_writes(deployment: str) -> None:
    """`make compose-up` adds docker-compose-forward.yml: podman-compose recreates the three
    containers with KONSUL_FORWARD_WRITES=true on the same volumes, and a follower proxies a
    write to the leader instead of answering 307."""
    compose("up", forward=True)
    wait_converged()
    value_everywhere("guide/redirected", "v1")  # the data outlived the containers
    for node in PORTS:
        code, _, body = put(node, f"guide/via-{node}", node)
        assert code == 200, body
    for node in PORTS:
        value_everywhere(f"guide/via-{node}", node)


def test_the_guides_rolling_restart_loses_no_acknowledged_write(deployment: str) -> None:
    """Followers first, one at a time, each rejoined before the next; the leader last (it hands
    leadership over on SIGTERM). A client writing through all three ports all along."""
    leader = wait_converged()
    order = [n for n in PORTS if n != leader] + [leader]
    with WriteLoad(lambda: list(URLS.values()), writers=2, prefix="rolling/") as load:
        for node in order:
            before = len(load.acks)
            podman("restart", "--time", "30", CONTAINERS[node])
            wait_until(lambda n=node: status(n) is not None, 60, f"{node} to serve again", 0.1)
            wait_converged(60)
            wait_until(lambda b=before: len(load.acks) > b + 10, 30, "writes to go on", 0.05)
    assert wait_converged() != leader, (
        f"the leader, restarted last, handed leadership over:\n{diagnosis()}"
    )
    assert_no_acked_write_lost(list(URLS.values()), load)


def test_a_killed_leader_container_is_replaced(deployment: str) -> None:
    """SIGKILL to the leader's container: a survivor accepts writes again (the figure against
    the bar is `make bench`'s; here a generous bound and the figures printed)."""
    for _ in range(3):
        leader = wait_converged(60)
        survivors = [n for n in PORTS if n != leader]
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", CONTAINERS[leader]))
        killed = time.monotonic()
        os.kill(pid, 9)
        wait_until(lambda s=survivors: any(accepts(n) for n in s), 10, "a write to be accepted",
                   0.005)
        failover_seconds.append(time.monotonic() - killed)
        podman("start", CONTAINERS[leader])
    print(f"compose failover (s): {[round(s, 2) for s in failover_seconds]}, "
          f"median {statistics.median(failover_seconds):.2f}")
    assert max(failover_seconds) < 5, failover_seconds


def container_log(name: str) -> str:
    done = subprocess.run(["podman", "logs", "--tail", "40", name], env=podman_env(),
                          capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


def accepts(node: str) -> bool:
    try:
        return put(node, "failover", "x")[0] == 200
    except OSError:
        return False


def test_down_removes_containers_network_and_volumes(deployment: str) -> None:
    assert leftovers()
    compose("down")
    assert leftovers() == []
