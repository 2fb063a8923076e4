"""Session fixtures of the kind e2e suite: a kind cluster, the image built and loaded into it,
the chart installed (operator namespaced, in a namespace enforcing Pod Security "restricted").

Knobs (environment):
  KONSUL_E2E_CLUSTER  kind cluster name (default konsul-e2e); an existing one is reused and kept
  KONSUL_E2E_KEEP=1   keep the cluster this run created (for poking at it afterwards)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.kind_driver import KindDriver, Proxy, run, tool
from tests import k8s_helpers as k8s
from tests.processes import REPO

CLUSTER = os.environ.get("KONSUL_E2E_CLUSTER", "konsul-e2e")
NAMESPACE = "konsul-e2e"
RELEASE = "konsul"
IMAGE, IMAGE_B = "konsul:0.1.0", "konsul:0.1.0-b"  # the same build under two tags: an image change


def _missing() -> list[str]:
    missing = []
    if shutil.which("docker") is None:
        missing.append("docker on PATH")
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        missing.append("a running Docker engine")
    if shutil.which("kind") is None:
        missing.append("kind on PATH")
    return missing


MISSING = _missing()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if MISSING:
        # One clear line, and not a single test attempted. (Only this directory's tests: the
        # hook sees the whole session, the local plane's suite included.)
        skip = pytest.mark.skip(reason=f"kind e2e skipped: needs {' and '.join(MISSING)}")
        here = Path(__file__).parent
        for item in items:
            if here in item.path.parents:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    existing = run("kind", "get", "clusters").stdout.split()
    created = CLUSTER not in existing
    if created:
        run("kind", "create", "cluster", "--name", CLUSTER, "--wait", "180s", timeout=600)
    path = tmp_path_factory.mktemp("kind") / "kubeconfig"
    path.write_text(run("kind", "get", "kubeconfig", "--name", CLUSTER).stdout)
    try:
        yield path
    finally:
        if created and os.environ.get("KONSUL_E2E_KEEP") != "1":
            run("kind", "delete", "cluster", "--name", CLUSTER, check=False)


@pytest.fixture(scope="session")
def image(kubeconfig: Path) -> str:
    run("docker", "build", "-t", IMAGE, str(REPO), timeout=1200)
    run("docker", "tag", IMAGE, IMAGE_B)
    run("kind", "load", "docker-image", IMAGE, IMAGE_B, "--name", CLUSTER, timeout=600)
    return IMAGE


@pytest.fixture(scope="session")
def proxy(kubeconfig: Path) -> Iterator[Proxy]:
    p = Proxy(kubeconfig)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="session")
def driver(kubeconfig: Path, image: str, proxy: Proxy) -> Iterator[KindDriver]:
    env = {"KUBECONFIG": str(kubeconfig)}
    kubectl = tool("kubectl")
    run(kubectl, "create", "namespace", NAMESPACE, env=env, check=False)
    run(kubectl, "label", "--overwrite", "namespace", NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted", env=env)
    helm_args = ["--set", "image.pullPolicy=Never", "--set", "operator.reconcileInterval=5",
                 "--wait", "--timeout", "5m"]
    backend = KindDriver(kubeconfig, NAMESPACE, RELEASE, "e2e", proxy, helm_args)
    backend.helm("install", RELEASE, str(REPO / "charts" / "konsul"), *helm_args)
    try:
        yield backend
    finally:
        print(backend.diagnostics())
        run(tool("helm"), "uninstall", RELEASE, "-n", NAMESPACE, env=env, check=False)


@pytest.fixture(scope="session")
def ledger(driver: KindDriver) -> k8s.Ledger:
    return k8s.Ledger(driver)
