"""A killed leader, three ways, ten times each: how long until a survivor accepts a write.

    python -m bench.failover                      # processes, netns, compose; 10 kills each
    python -m bench.failover --rounds 3 --modes processes,netns

- processes: three nodes on loopback; SIGKILL to the leader (the kernel resets its connections),
  which restarts at the same address.
- netns: three nodes in network namespaces, advertised by name; the leader's process is killed
  and then its namespace deleted, and it comes back at a new address under its name (what a
  container runtime or Kubernetes does to a killed container or pod).
- compose: the guide's compose deployment on the image (`make image`), SIGKILL to the leader
  container's process; `podman start` brings it back, at a new address.

The bar (issue #12): for each, the median of ten kills under 0.5 s and the slowest under 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.systems import first_accepted, konsul_put
from containers.podman import image_name
from tests.cluster.netns import NamedCluster, NetnsLab, NetnsNode, unavailable_reason
from tests.cluster_harness import LocalCluster
from tests.processes import REPO, http

MEDIAN_BAR_S, MAX_BAR_S = 0.5, 1.5
COMPOSE_PROJECT = "konsul-bench"
COMPOSE_PORTS = {"node1": 8501, "node2": 8502, "node3": 8503}
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "scripts/image/containers.conf")}


def processes(root: Path, rounds: int) -> list[float]:
    cluster = LocalCluster(root / "processes").start()
    try:
        times = []
        for _ in range(rounds):
            cluster.wait_converged()
            leader = cluster.leader()
            others = [n for n in cluster.running() if n is not leader]
            leader.kill(signal.SIGKILL)
            times.append(
                first_accepted(lambda o=others: any(konsul_put(n.url, "f", "x") for n in o))
            )
            leader.start()
        return times
    finally:
        cluster.stop()


def netns(root: Path, rounds: int) -> list[float]:
    (root / "netns").mkdir(parents=True)
    lab = NetnsLab().setup([1, 2, 3])
    cluster = NamedCluster(root / "netns", size=3, prefix=lab.prefix, lab=lab)
    try:
        cluster.start()

        def accepted(node: NetnsNode) -> bool:
            try:
                return lab.http("PUT", node.url + "/kv/f", {"value": "x"}, 0.5)[0] == 200
            except OSError:
                return False

        times = []
        for _ in range(rounds):
            cluster.wait_converged()
            leader = cluster.leader()
            assert isinstance(leader, NetnsNode)
            others = [n for n in cluster.running() if n is not leader]
            cluster.kill_namespace(leader)
            times.append(first_accepted(lambda o=others: any(accepted(n) for n in o)))
            cluster.restart_elsewhere(leader)
        return times
    finally:
        cluster.stop()
        lab.teardown()


def compose(rounds: int) -> list[float]:
    env = {**PODMAN_ENV, "COMPOSE_PROJECT": COMPOSE_PROJECT}
    script = str(REPO / "scripts/image/compose.sh")

    def podman(*args: str) -> str:
        return subprocess.run(["podman", *args], env=env, check=True, capture_output=True,
                              text=True, timeout=120).stdout

    def leader() -> str | None:
        """The leader all three agree on, once each has applied what it knows committed."""
        seen = set()
        for port in COMPOSE_PORTS.values():
            try:
                code, _, status = http("GET", f"http://127.0.0.1:{port}/cluster/status", None, 1)
            except OSError:
                return None
            if code != 200 or status["applied_index"] < status["commit_index"]:
                return None
            seen.add(status["leader_id"])
        return seen.pop() if len(seen) == 1 and None not in seen else None

    subprocess.run([script, "down"], env=env, check=True, capture_output=True, timeout=300)
    subprocess.run([script, "up"], env=env, check=True, capture_output=True, timeout=300)
    try:
        times = []
        for _ in range(rounds):
            deadline = time.monotonic() + 60
            while (current := leader()) is None:
                assert time.monotonic() < deadline, "the compose deployment did not converge"
                time.sleep(0.1)
            container = f"{COMPOSE_PROJECT}_konsul{current[-1]}_1"
            pid = int(podman("inspect", "--format", "{{.State.Pid}}", container))
            others = [p for n, p in COMPOSE_PORTS.items() if n != current]
            os.kill(pid, signal.SIGKILL)
            times.append(first_accepted(
                lambda o=others: any(konsul_put(f"http://127.0.0.1:{p}", "f", "x") for p in o)
            ))
            podman("start", container)
        return times
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=300)


def compose_unavailable() -> str | None:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        return "needs root and podman (make image)"
    done = subprocess.run(["podman", "image", "exists", image_name()], capture_output=True,
                          env=PODMAN_ENV)
    return None if done.returncode == 0 else f"no image {image_name()} (make image)"


def report(results: dict[str, list[float]]) -> list[str]:
    lines = ["| Leader killed → first accepted write | median s | max s | bar (< 0.5 / < 1.5 s) |",
             "|---|---:|---:|---|"]
    for mode, times in results.items():
        median, worst = statistics.median(times), max(times)
        ok = median < MEDIAN_BAR_S and worst < MAX_BAR_S
        lines.append(f"| {mode} ({len(times)} kills) | {median:.2f} | {worst:.2f} | "
                     f"{'met' if ok else 'NOT met'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--modes", default="processes,netns,compose")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="konsul-failover-"))
    runs: dict[str, Callable[[], list[float]]] = {
        "processes": lambda: processes(root, args.rounds),
        "netns": lambda: netns(root, args.rounds),
        "compose": lambda: compose(args.rounds),
    }
    skip = {"netns": unavailable_reason(), "compose": compose_unavailable()}
    results: dict[str, list[float]] = {}
    try:
        for mode in args.modes.split(","):
            if skip.get(mode):
                print(f"{mode}: skipped, {skip[mode]}", flush=True)
                continue
            results[mode] = runs[mode]()
            print(f"{mode}: {' '.join(f'{t:.2f}' for t in results[mode])} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n".join(report(results)))


if __name__ == "__main__":
    main()
