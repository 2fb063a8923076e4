"""VictoriaMetrics (Debian's victoria-metrics, 1.79.5) discovering scrape targets in Konsul with
Prometheus's ``consul_sd_configs``: a service registered through ``/v1`` becomes an ``up``
target, and goes away once deregistered; on a three-node cluster also across a leadership
transfer.

The registered service points at a Konsul node's own ``/metrics``, so the target really is
scraped. VictoriaMetrics watches with blocking queries (its default ``wait`` of 525 s), so a
target appearing within seconds shows that blocking queries wake on changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import LocalCluster
from tests.consul.conftest import call, unique
from tests.processes import KonsulProcess, free_port, wait_until

BINARY = shutil.which("victoria-metrics")
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="victoria-metrics is not installed (scripts/install-consul-clients.sh)"
)


class VictoriaMetrics:
    def __init__(self, root: Path, consul_server: str) -> None:
        self.root = root
        self.port = free_port()
        config = root / "scrape.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: konsul\n"
            "    consul_sd_configs:\n"
            f"      - server: {consul_server}\n"
            "        token: vm-token\n"  # sent as Authorization: Bearer
        )
        assert BINARY is not None
        self.proc = subprocess.Popen(
            [BINARY, f"-promscrape.config={config}", f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={root / 'data'}", "-promscrape.consulSDCheckInterval=1s",
             "-loggerLevel=WARN"],
            stdout=(root / "vm.log").open("ab"), stderr=subprocess.STDOUT, cwd=root,
        )

    def targets(self) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=2
            ) as resp:
                return list(json.load(resp)["data"]["activeTargets"])
        except OSError:
            return []

    def target(self, service_id: str) -> dict[str, Any] | None:
        for t in self.targets():
            if t["discoveredLabels"].get("__meta_consul_service_id") == service_id:
                return t
        return None

    def wait_up(self, service_id: str, timeout: float = 20) -> dict[str, Any]:
        def up() -> dict[str, Any] | None:
            t = self.target(service_id)
            return t if t is not None and t["health"] == "up" else None

        found: dict[str, Any] = wait_until(up, timeout, f"{service_id} to be an up target")
        return found

    def wait_gone(self, service_id: str, timeout: float = 20) -> None:
        wait_until(lambda: self.target(service_id) is None, timeout, f"{service_id} to go")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Any]:
    started: list[VictoriaMetrics] = []

    def start(consul_server: str) -> VictoriaMetrics:
        vm = VictoriaMetrics(tmp_path, consul_server)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.stop()


def register(node: KonsulProcess, service_id: str, scraped: KonsulProcess) -> None:
    reply = call("PUT", f"{node.url}/v1/agent/service/register", {
        "Name": "konsul-metrics", "ID": service_id, "Address": scraped.host,
        "Port": scraped.port, "Tags": ["prod", "metrics"], "Meta": {"team": "registry"},
    })
    assert reply.status == 200, reply.body


def deregister(node: KonsulProcess, service_id: str) -> None:
    reply = call("PUT", f"{node.url}/v1/agent/service/deregister/{service_id}")
    assert reply.status == 200, reply.body


def test_a_registered_service_is_scraped_until_deregistered(
    standalone: KonsulProcess, victoria: Any
) -> None:
    vm = victoria(f"{standalone.host}:{standalone.port}")
    service_id = unique("metrics")
    register(standalone, service_id, standalone)
    target = vm.wait_up(service_id)
    labels = target["discoveredLabels"]
    assert target["scrapeUrl"] == f"http://{standalone.host}:{standalone.port}/metrics"
    assert labels["__meta_consul_service"] == "konsul-metrics"
    assert labels["__meta_consul_tags"] == ",prod,metrics,"
    assert labels["__meta_consul_service_metadata_team"] == "registry"
    assert labels["__meta_consul_dc"] == "dc1"
    assert labels["__meta_consul_health"] == "passing"
    deregister(standalone, service_id)
    vm.wait_gone(service_id)


def test_discovery_through_a_follower_across_a_leadership_transfer(
    cluster: LocalCluster, victoria: Any
) -> None:
    follower = cluster.followers()[0]
    vm = victoria(follower.http_addr)
    first = unique("before")
    register(follower, first, follower)
    vm.wait_up(first)

    old = cluster.leader()
    reply = call("POST", f"{old.url}/cluster/transfer-leadership", timeout=30)
    assert reply.status == 200, reply.body
    wait_until(lambda: cluster.leader() is not old, 10, "a new leader")

    # Discovery goes on through the new leadership: a new target appears, the old one stays up,
    # and both go away once deregistered (writes sent to whichever member is not leading now).
    second = unique("after")
    entry = cluster.followers()[0]
    other = next(n for n in cluster.nodes if n is not follower)  # a target of its own
    register(entry, second, other)
    vm.wait_up(second)
    assert vm.target(first) is not None
    deregister(entry, first)
    deregister(entry, second)
    vm.wait_gone(first)
    vm.wait_gone(second)
