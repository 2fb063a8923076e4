"""The local Kubernetes plane for every suite under e2e/ (except kind/, which brings its own
cluster): the session fixture ``plane`` uses a plane that is already up and leaves it running,
or brings one up (`make k8s-up`: a cold machine builds the programs first) and takes it down at
the end of the session.

Knobs (environment):
  KONSUL_E2E_KEEP=1    keep a plane this session brought up (poke at it with
                       `export KUBECONFIG=build/k8s/kubeconfig`; `make k8s-down` ends it)
  KONSUL_E2E_SLOW=2    stretch every deadline (a loaded machine)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from e2e.plane import names
from e2e.plane.kubelet.node import FALLBACK_CONDITION
from e2e.plane.testing import Plane

PLANE = [sys.executable, "-m", "e2e.plane"]
RUNTIMES: list[str] = []   # one line per node, for the summary at the end of the run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How the plane ran its pods, always in the output: a node in the process fallback is
    never silent."""
    if RUNTIMES:
        terminalreporter.section("local Kubernetes plane")
        for line in RUNTIMES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def plane() -> Iterator[Plane]:
    if os.geteuid() != 0:
        pytest.skip("local plane e2e skipped: needs root (bridge, namespaces, podman)")
    running = subprocess.run([*PLANE, "status"], capture_output=True, cwd=names.REPO,
                             timeout=60).returncode == 0
    if not running:
        # Its progress goes to the terminal: a cold build takes a while.
        subprocess.run([*PLANE, "up"], check=True, cwd=names.REPO, timeout=5400)
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
