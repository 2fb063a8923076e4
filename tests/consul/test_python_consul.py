"""python-consul 0.7.1 (Debian's python3-consul), the older client: ``?token=`` on every call
and ``X-Consul-Index`` read on every 404. It runs under Debian's interpreter in a process of its
own (``drivers/python_consul.py``); the venv never imports it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import LocalCluster
from tests.consul.conftest import unique
from tests.processes import KonsulProcess

DEBIAN_PYTHON = "/usr/bin/python3"
DRIVER = Path(__file__).parent / "drivers" / "python_consul.py"


def _installed() -> bool:
    try:
        probe = subprocess.run([DEBIAN_PYTHON, "-I", "-c", "import consul"], capture_output=True,
                               timeout=30)
    except OSError:
        return False
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _installed(), reason="python3-consul is not installed (scripts/install-consul-clients.sh)"
)


def drive(node: KonsulProcess) -> dict[str, Any]:
    prefix = unique("pyconsul")
    done = subprocess.run(
        [DEBIAN_PYTHON, "-I", str(DRIVER), node.host, str(node.port), prefix],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["prefix"] = prefix
    return result


@pytest.mark.parametrize("where", ["standalone", "follower"])
def test_kv_and_catalog_round_trip(where: str, request: pytest.FixtureRequest) -> None:
    if where == "standalone":
        node: KonsulProcess = request.getfixturevalue("standalone")
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster")
        node = cluster.followers()[0]
    out = drive(node)
    prefix, name = out["prefix"], out["prefix"].replace("/", "-")
    assert out["version"] == "0.7.1"
    assert out["put"] is True and out["put_flags"] is True and out["cas_miss"] is False
    assert out["get"]["key"] == f"{prefix}/greeting" and out["get"]["value"] == "hello"
    assert int(out["get"]["index"]) >= 1
    assert out["missing"]["value"] is None and int(out["missing"]["index"]) >= 1
    assert out["recurse"] == [[f"{prefix}/greeting", 0], [f"{prefix}/other", 3]]
    assert out["delete"] is True
    assert out["register"] is True and out["ttl_pass"] is True
    assert out["catalog_services"] == ["blue"]
    assert out["catalog_service"] == [[f"{name}-1", 8080]]
    assert out["health_passing"] == [f"{name}-1"]
    assert out["deregister"] is True and out["after_deregister"] is False
