#!/usr/bin/env python3
"""Make the README's pictures of the web UI: docs/img/ui-{cluster,keys,services}.png.

A real three-node cluster on loopback (the tests' harness) with a little demo data, every check
aimed at the cluster's own addresses, photographed in Debian's headless Chromium. Run it with
``make ui-screenshots`` after changing how a page looks, and commit the PNGs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster_harness import ClusterNode, LocalCluster  # noqa: E402
from tests.processes import http, wait_until  # noqa: E402
from tests.ui.browser import launch_chromium  # noqa: E402

OUT = REPO / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 500}  # the pages' content, little blank below


def call(node: ClusterNode, method: str, path: str, body: object = None) -> None:
    code, _, answer = http(method, node.url + path, body)
    assert code == 200, f"{method} {path}: {code} {answer}"


def seed(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    keys = {
        "app/config": '{"replicas": 3, "log_level": "info", "features": ["search", "export"]}',
        "app/db/url": "postgres://app@127.0.0.1:5432/app",
        "app/db/pool-size": "20",
        "app/release": "2026.12.1",
        "billing/rates/eu": '{"vat": 0.21}',
        "billing/rates/us": '{"vat": 0}',
        "maintenance": "false",
    }
    for key, value in keys.items():
        call(leader, "PUT", f"/kv/{key}", {"value": value})
    # Checks that really run: each member's own /health passes, a closed port fails.
    for n, node in enumerate(cluster.nodes, start=1):
        call(leader, "PUT", "/register", {
            "name": "web", "id": f"web-{n}", "address": node.host, "port": node.port,
            "tags": ["v2", "eu"] if n < 3 else ["v1", "eu"],
            "checks": [{"http": f"{node.url}/health", "interval": "5s"}],
        })
    call(leader, "PUT", "/register", {
        "name": "billing", "id": "billing-1", "address": "127.0.0.1", "port": 9301,
        "tags": ["v1"], "checks": [{"id": "billing-1-ttl", "name": "queue depth", "ttl": "10m"}],
    })
    call(leader, "PUT", "/health/check/billing-1-ttl",
         {"status": "warning", "output": "queue depth 1200 (warn above 1000)"})
    call(leader, "PUT", "/register", {
        "name": "search", "id": "search-1", "address": "127.0.0.1", "port": 9302,
        "checks": [{"tcp": "127.0.0.1:9", "interval": "5s", "timeout": "1s"}],
    })

    def checked() -> bool:
        code, _, checks = http("GET", leader.url + "/health/checks")
        return code == 200 and all(c["output"] != "Not yet checked" for c in checks)

    wait_until(checked, 30, "every check to have run")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as root:
        cluster = LocalCluster(Path(root), size=3).start()
        try:
            seed(cluster)
            follower = cluster.followers()[0]
            with launch_chromium() as chromium:
                page = chromium.new_page(viewport=VIEWPORT)
                for name, fragment, ready in (
                    ("cluster", "#/cluster", "#members tbody tr >> nth=2"),
                    ("keys", "#/key/app/config", "#key-value"),
                    ("services", "#/services", "#services"),
                ):
                    page.goto(f"{follower.url}/ui/{fragment}")
                    page.wait_for_selector(ready)
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(OUT / f"ui-{name}.png"))
                    print(f"wrote docs/img/ui-{name}.png")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
