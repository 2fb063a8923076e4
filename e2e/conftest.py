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
from e2e.plane.testing import Plane

PLANE = [sys.executable, "-m", "e2e.plane"]


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
    nodes = plane.get("nodes")["items"]
    for node in nodes:
        info = node["status"]["nodeInfo"]
        print(f"\nplane: node {node['metadata']['name']} runs pods with "
              f"{info['containerRuntimeVersion']}", file=sys.stderr)
    try:
        yield plane
    finally:
        if not running and os.environ.get("KONSUL_E2E_KEEP") != "1":
            subprocess.run([*PLANE, "down"], check=True, cwd=names.REPO, timeout=600)
