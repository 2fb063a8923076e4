"""The parts of the kind e2e driver that run without a cluster: ``kubectl proxy`` started and
parsed by ``Proxy``, and ``proxied_http`` through it to a real konsul node (its answers pass
through) or to nothing (the proxy's own error becomes a connection error, never a Konsul 5xx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.kind_driver import Proxy, proxied_http
from tests.cluster_harness import WriteLoad, assert_no_acked_write_lost
from tests.processes import KonsulProcess, free_port


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n")
    return path


@pytest.fixture
def node(tmp_path: Path) -> Iterator[KonsulProcess]:
    process = KonsulProcess(tmp_path / "node").start()
    try:
        yield process
    finally:
        process.stop()


def test_requests_through_kubectl_proxy_reach_the_node(node: KonsulProcess,
                                                       tmp_path: Path) -> None:
    proxy = Proxy(kubeconfig(tmp_path / "kubeconfig", node.url))
    try:
        assert proxy.url.startswith("http://127.0.0.1:")
        code, _, status = proxied_http("GET", proxy.url + "/cluster/status")
        assert code == 200 and status["leader_id"]
        with WriteLoad(urls=lambda: [proxy.url], writers=2, timeout=3.0,
                       http_fn=proxied_http) as load:
            load.wait_acks(30)
        assert assert_no_acked_write_lost([node.url, proxy.url], load, proxied_http) >= 30
        code, _, missing = proxied_http("GET", proxy.url + "/kv/no-such-key")
        assert code == 404 and "error" in missing  # Konsul's own errors pass through
    finally:
        proxy.stop()


def test_the_proxys_own_errors_are_connection_errors(tmp_path: Path) -> None:
    proxy = Proxy(kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(ConnectionError):
            proxied_http("PUT", proxy.url + "/kv/x", {"value": "1"}, timeout=5)
    finally:
        proxy.stop()
