"""``/v1`` with ACLs on: the native API's policies, and Consul's text 403 that Consul clients
raise as their permission error (py-consul's ``ACLPermissionDenied``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from tests.consul.conftest import call, unique
from tests.processes import KonsulProcess, wait_until

MANAGEMENT = "consul-compat-management-secret"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KonsulProcess]:
    node = KonsulProcess(
        Path(tmp_path_factory.mktemp("consul-acl")) / "node",
        env={"KONSUL_ACL_ENABLED": "true", "KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN": MANAGEMENT},
    )
    try:
        node.start()
        wait_until(lambda: call("GET", f"{node.url}/v1/agent/self",
                                headers={"X-Consul-Token": MANAGEMENT}).status == 200,
                   10, "the initial management token")
        yield node
    finally:
        node.kill()


def test_py_consul_without_a_token_is_denied_with_consuls_403(secured: KonsulProcess) -> None:
    anonymous = consul.Consul(host=secured.host, port=secured.port)
    key = unique("acl")
    with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
        anonymous.kv.put(key, "v")
    with pytest.raises(consul.ACLPermissionDenied):
        anonymous.kv.get(key)
    with pytest.raises(consul.ACLPermissionDenied):
        anonymous.agent.self()
    denied = call("GET", f"{secured.url}/v1/kv/{key}")
    assert denied.status == 403 and denied.headers["Content-Type"].startswith("text/plain")
    unknown = call("GET", f"{secured.url}/v1/kv/{key}", headers={"X-Consul-Token": "nobody-at-all"})
    assert unknown.status == 403 and unknown.body.startswith(b"ACL not found")


def test_the_management_token_works_through_every_carrier(secured: KonsulProcess) -> None:
    manager = consul.Consul(host=secured.host, port=secured.port, token=MANAGEMENT)
    key = unique("acl")
    assert manager.kv.put(key, b"\x00secret") is True
    assert manager.kv.get(key)[1]["Value"] == b"\x00secret"
    url = f"{secured.url}/v1/kv/{key}"
    assert call("GET", f"{url}?token={MANAGEMENT}").status == 200
    assert call("GET", url, headers={"Authorization": f"Bearer {MANAGEMENT}"}).status == 200
    assert call("GET", url, headers={"X-Konsul-Token": MANAGEMENT}).status == 200
    name = unique("svc")
    assert manager.agent.service.register(name, port=80) is True
    assert name in manager.catalog.services()[1]
    # Listings are filtered, not refused: the anonymous token sees no service at all.
    anonymous = call("GET", f"{secured.url}/v1/catalog/services")
    assert anonymous.status == 200 and name not in anonymous.json()
