"""Contracts of the Consul clients that cannot be installed here: the requests each sends, as
``/work/shared/reference/consul-api.md`` records them from their sources, answered with the
fields each reads (Go's JSON decoding matches names in any case; these tests use Consul's).

- Prometheus 2.42 ``discovery/consul`` (and the Go client ``hashicorp/consul/api`` it shares with
  consul-template, Traefik and the CLI): ``LastContact`` must parse as an unsigned integer, the
  index must move when the answer does, ``Node`` and ``Service`` must not be null.
- consul-template: ``key``, ``ls``/``tree``, ``service`` (``passing``), ``services``, ``nodes``,
  ``node``; blocking with its default 60 s wait.
- Traefik's Consul Catalog provider: catalog and health listings of a service, paired by position.
- The ``consul`` CLI: ``kv put``/``kv get``, ``catalog services``, ``members``.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.consul.conftest import Reply, call, unique
from tests.processes import KonsulProcess

GO_WAIT = "wait=120000ms"  # how the Go client spells a 2-minute wait


@pytest.fixture
def service(standalone: KonsulProcess) -> Iterator[str]:
    """A service of two instances, one passing (no checks), one critical (a TTL check)."""
    name = unique("shop")
    url = f"{standalone.url}/v1/agent/service/register"
    assert call("PUT", url, {"Name": name, "ID": f"{name}-a", "Address": "127.0.0.1",
                             "Port": 9001, "Tags": ["prod", "web"],
                             "Meta": {"version": "2"}}).status == 200
    assert call("PUT", url, {"Name": name, "ID": f"{name}-b", "Address": "127.0.0.2",
                             "Port": 9002, "Tags": ["web"],
                             "Check": {"TTL": "1m"}}).status == 200
    yield name
    for suffix in ("a", "b"):
        call("PUT", f"{standalone.url}/v1/agent/service/deregister/{name}-{suffix}")


def go_query_meta(reply: Reply) -> tuple[int, int, bool]:
    """What the Go client's parseQueryMeta takes from a read (it fails on anything else)."""
    last_index = int(reply.headers["X-Consul-Index"])
    last_contact = int(reply.headers["X-Consul-LastContact"])
    assert last_contact >= 0
    known = reply.headers["X-Consul-KnownLeader"]
    assert known in ("true", "false")
    return last_index, last_contact, known == "true"


def test_prometheus_discovery(standalone: KonsulProcess, service: str) -> None:
    base = standalone.url
    agent = call("GET", f"{base}/v1/agent/self").json()
    datacenter = agent["Config"]["Datacenter"]
    assert datacenter == "dc1"
    catalog = call("GET", f"{base}/v1/catalog/services?dc={datacenter}&stale=&{GO_WAIT}&index=1")
    index, _, _ = go_query_meta(catalog)
    assert index > 1 and service in catalog.json()
    health = call("GET", f"{base}/v1/health/service/{service}?dc={datacenter}&stale=&tag=web"
                         f"&{GO_WAIT}&index=1")
    go_query_meta(health)
    entries = health.json()
    assert [e["Service"]["ID"] for e in entries] == [f"{service}-a", f"{service}-b"]
    for entry in entries:
        node, svc = entry["Node"], entry["Service"]
        assert node is not None and svc is not None
        assert isinstance(node["Node"], str) and isinstance(node["Address"], str)
        assert isinstance(node["Meta"], dict)
        assert all(isinstance(v, str) for v in node["TaggedAddresses"].values())
        assert {"ID", "Address", "Port", "Tags", "Meta"} <= set(svc)
        for check in entry["Checks"]:
            assert check["Status"] in ("passing", "warning", "critical") and check["CheckID"]
    first = entries[0]["Service"]
    assert (first["Address"], first["Port"], first["Tags"], first["Meta"]) == (
        "127.0.0.1", 9001, ["prod", "web"], {"version": "2"})
    # The same index again is "no news": Prometheus waits on it until something changes.
    unchanged = call("GET", f"{base}/v1/health/service/{service}?stale=&index={index}"
                            "&wait=200ms")
    assert int(unchanged.headers["X-Consul-Index"]) == go_query_meta(health)[0]


def test_consul_template_functions(standalone: KonsulProcess, service: str) -> None:
    base = standalone.url
    prefix = unique("tmpl")
    for key, value in (("config/port", b"8080"), ("config/host", b"127.0.0.1")):
        assert call("PUT", f"{base}/v1/kv/{prefix}/{key}", value).body == b"true"
    # {{ key "prefix/config/port" }}
    key = call("GET", f"{base}/v1/kv/{prefix}/config/port?index=0&wait=60000ms")
    assert base64.b64decode(key.json()[0]["Value"]) == b"8080"
    # {{ tree "prefix/config" }} / {{ ls }}
    tree = call("GET", f"{base}/v1/kv/{prefix}/config?recurse=&index=0&wait=60000ms")
    assert [e["Key"] for e in tree.json()] == [f"{prefix}/config/host", f"{prefix}/config/port"]
    # {{ service "name" }}: passing instances only.
    healthy = call("GET", f"{base}/v1/health/service/{service}?passing=1&index=0&wait=60000ms")
    assert [e["Service"]["ID"] for e in healthy.json()] == [f"{service}-a"]
    # {{ services }}, {{ nodes }}, {{ node "n" }}
    services = call("GET", f"{base}/v1/catalog/services?index=0&wait=60000ms").json()
    assert services[service] == ["prod", "web"]
    nodes = call("GET", f"{base}/v1/catalog/nodes?index=0&wait=60000ms").json()
    name = nodes[0]["Node"]
    node = call("GET", f"{base}/v1/catalog/node/{name}").json()
    assert node["Node"]["Node"] == name and f"{service}-a" in node["Services"]
    assert call("GET", f"{base}/v1/catalog/node/{unique('nowhere')}").json() is None


def test_consul_template_watch_wakes_on_a_change(standalone: KonsulProcess) -> None:
    base = standalone.url
    key = f"{unique('tmpl')}/watched"
    call("PUT", f"{base}/v1/kv/{key}", b"1")
    index = call("GET", f"{base}/v1/kv/{key}").index
    threading.Timer(0.3, lambda: call("PUT", f"{base}/v1/kv/{key}", b"2")).start()
    started = time.monotonic()
    changed = call("GET", f"{base}/v1/kv/{key}?index={index}&wait=60000ms")
    assert time.monotonic() - started < 1.5
    assert changed.index > index and base64.b64decode(changed.json()[0]["Value"]) == b"2"


def test_traefik_catalog_provider(standalone: KonsulProcess, service: str) -> None:
    base = standalone.url
    assert service in call("GET", f"{base}/v1/catalog/services").json()
    catalog: list[dict[str, Any]] = call("GET", f"{base}/v1/catalog/service/{service}").json()
    health: list[dict[str, Any]] = call("GET", f"{base}/v1/health/service/{service}").json()
    assert len(catalog) == len(health) == 2
    for i, item in enumerate(catalog):  # Traefik pairs them by position: healthServices[i]
        assert item["ServiceID"] == health[i]["Service"]["ID"]
        assert item["ServiceName"] == service and item["Node"] == health[i]["Node"]["Node"]
        assert item["ServiceAddress"] and item["Address"] and item["ServicePort"] > 0
        assert isinstance(item["ServiceTags"], list)
    assert (catalog[1]["ServiceAddress"], catalog[1]["ServicePort"]) == ("127.0.0.2", 9002)


def test_consul_cli_commands(standalone: KonsulProcess) -> None:
    base = standalone.url
    key = unique("cli")
    # consul kv put key value / consul kv get key
    assert call("PUT", f"{base}/v1/kv/{key}", b"from the cli").body == b"true"
    got = call("GET", f"{base}/v1/kv/{key}")
    assert base64.b64decode(got.json()[0]["Value"]) == b"from the cli"
    # consul catalog services
    assert isinstance(call("GET", f"{base}/v1/catalog/services").json(), dict)
    # consul members
    members = call("GET", f"{base}/v1/agent/members?segment=_all").json()
    assert len(members) == 1
    member = members[0]
    assert {"Name", "Addr", "Port", "Tags", "Status"} <= set(member)
    assert member["Status"] == 1 and member["Tags"]["role"] == "consul"
    assert member["Tags"]["dc"] == "dc1"
