"""The kind driver (KONSUL_E2E_DRIVER=kind, where docker and kind exist): a kind cluster, the
image built with docker and loaded into it, and routes that let this machine reach the cluster
as it reaches the local plane: pod IPs and Service ClusterIPs through the node container (kind's
own docker network, which the suite created).

Knobs: KONSUL_E2E_CLUSTER (kind cluster name, default konsul-e2e; an existing one is reused and
kept), KONSUL_E2E_KEEP=1 (keep the cluster this run created).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from e2e.driver import HTTP_PORT, Cluster
from tests.processes import REPO

NAME = os.environ.get("KONSUL_E2E_CLUSTER", "konsul-e2e")
POD_CIDR, SERVICE_CIDR = "10.244.0.0/16", "10.96.0.0/12"   # kind's defaults


def missing() -> list[str]:
    """What this machine lacks for the kind driver (empty: it can run)."""
    lacking = []
    if shutil.which("docker") is None:
        lacking.append("docker on PATH")
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        lacking.append("a running Docker engine")
    if shutil.which("kind") is None:
        lacking.append("kind on PATH")
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
    routes = [["ip", "route", "replace", cidr, "via", node_ip]
              for cidr in (POD_CIDR, SERVICE_CIDR)]
    sudo = ["sudo"] if os.geteuid() else []
    for route in routes:
        _run(*sudo, *route)
    kubectl = shutil.which("kubectl") or str(REPO / ".venv" / "bin" / "kubectl")
    result = Cluster(kubeconfig, kubectl, str(REPO / ".venv" / "bin" / "helm"),
                     client_address=lambda ns, svc: _cluster_ip(kubeconfig, kubectl, ns, svc),
                     name="kind")
    try:
        yield result
    finally:
        for route in routes:
            subprocess.run([*sudo, "ip", "route", "del", *route[3:]], check=False)
        if created and os.environ.get("KONSUL_E2E_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", NAME], check=False)


def _cluster_ip(kubeconfig: Path, kubectl: str, namespace: str, service: str) -> str:
    """kube-proxy on the node answers the ClusterIP (routed above)."""
    ip = _run(kubectl, f"--kubeconfig={kubeconfig}", "-n", namespace, "get", "service", service,
              "-o", "jsonpath={.spec.clusterIP}").strip()
    return f"{ip}:{HTTP_PORT}"
