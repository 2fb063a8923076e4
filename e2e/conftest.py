"""The session fixtures of every suite under e2e/.

``plane``: the local Kubernetes plane. A plane that is already up is used and left running;
otherwise one is brought up (`make k8s-up`: a cold machine builds the programs first) and taken
down at the end of the session. This checkout's image (`make image`) is copied into the plane's
own image store either way.

``cluster``: where the Konsul scenarios (test_konsul.py) run, by KONSUL_E2E_DRIVER: ``plane``
(the default) or ``kind`` (where docker and kind exist; e2e/kind.py).

Knobs (environment):
  KONSUL_E2E_DRIVER=kind  the scenarios on kind instead of the local plane
  KONSUL_E2E_KEEP=1       keep a plane (or kind cluster) this session brought up (poke at it
                          with `export KUBECONFIG=build/k8s/kubeconfig`; `make k8s-down` ends it)
  KONSUL_E2E_SLOW=2       stretch every deadline (a loaded machine)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from e2e import checks, kind
from e2e.driver import Cluster
from e2e.plane import images, names
from e2e.plane.kubelet.node import FALLBACK_CONDITION
from e2e.plane.testing import Plane

PLANE = [sys.executable, "-m", "e2e.plane"]
DRIVER = os.environ.get("KONSUL_E2E_DRIVER", "plane")
SECOND_TAG = "konsul:0.1.0-b"   # the same image under another tag: an image change
RUNTIMES: list[str] = []   # one line per node, for the summary at the end of the run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How the plane ran its pods (a node in the process fallback is never silent), and the
    scenarios' figures."""
    if RUNTIMES:
        terminalreporter.section("local Kubernetes plane")
        for line in RUNTIMES:
            terminalreporter.write_line(line)
    if checks.FIGURES:
        terminalreporter.section(f"Konsul e2e figures ({DRIVER}, KONSUL_E2E_SLOW="
                                 f"{os.environ.get('KONSUL_E2E_SLOW', '1')}, load "
                                 f"{os.getloadavg()[0]:.1f})")
        for what, value in checks.FIGURES:
            terminalreporter.write_line(f"{what}: {value}")


@pytest.fixture(scope="session")
def plane() -> Iterator[Plane]:
    if os.geteuid() != 0:
        pytest.skip("local plane e2e skipped: needs root (bridge, namespaces, podman)")
    running = subprocess.run([*PLANE, "status"], capture_output=True, cwd=names.REPO,
                             timeout=60).returncode == 0
    if not running:
        # Its progress goes to the terminal: a cold build takes a while.
        subprocess.run([*PLANE, "up"], check=True, cwd=names.REPO, timeout=5400)
    images.load(SECOND_TAG)  # this checkout's `make image`, in the plane's own store
    plane = Plane()
    for node in plane.get("nodes")["items"]:
        line = (f"node {node['metadata']['name']} runs pods with "
                f"{node['status']['nodeInfo']['containerRuntimeVersion']}")
        fallback = [c for c in node["status"]["conditions"] if c["type"] == FALLBACK_CONDITION]
        if fallback and fallback[0]["status"] == "True":
            line += f": NOT as containers of their image: {fallback[0]['message']}"
        RUNTIMES.append(line)
    try:
        yield plane
    finally:
        if not running and os.environ.get("KONSUL_E2E_KEEP") != "1":
            subprocess.run([*PLANE, "down"], check=True, cwd=names.REPO, timeout=600)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if DRIVER == "kind":
        lacking = kind.missing()
        if lacking:
            pytest.skip(f"kind e2e skipped: needs {' and '.join(lacking)}")
        yield from kind.cluster(tmp_path_factory.mktemp("kind"), (images.image(), SECOND_TAG))
        return
    assert DRIVER == "plane", f"KONSUL_E2E_DRIVER={DRIVER}: plane or kind"
    request.getfixturevalue("plane")
    yield Cluster(names.KUBECONFIG, names.kubectl(), str(names.REPO / ".venv" / "bin" / "helm"))
