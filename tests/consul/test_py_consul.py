"""py-consul (PyPI), unmodified, against a standalone node and against a cluster's follower.

Every test runs twice: on the standalone node and on a follower of the three-node cluster,
where each write is forwarded to the leader and each default read waits for the leader's view.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

import consul
import pytest

from tests.cluster_harness import LocalCluster
from tests.consul.conftest import unique
from tests.processes import KonsulProcess, wait_until


@pytest.fixture(params=["standalone", "follower"])
def client(
    request: pytest.FixtureRequest,
) -> Iterator[consul.Consul]:
    if request.param == "standalone":
        node: KonsulProcess = request.getfixturevalue("standalone")
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster")
        node = cluster.followers()[0]
    c = consul.Consul(host=node.host, port=node.port)
    yield c
    c.http.session.close()


def test_kv_round_trip_recurse_keys_and_separator(client: consul.Consul) -> None:
    base = unique("app")
    assert client.kv.put(f"{base}/config", "v1") is True
    assert client.kv.put(f"{base}/db/host", "127.0.0.1", flags=42) is True
    assert client.kv.put(f"{base}/db/port", b"5432") is True

    index, entry = client.kv.get(f"{base}/config")
    assert int(index) >= 1
    assert entry["Key"] == f"{base}/config" and entry["Value"] == b"v1"
    assert entry["Flags"] == 0 and entry["LockIndex"] == 0
    assert entry["CreateIndex"] == entry["ModifyIndex"] >= 1
    assert client.kv.get(f"{base}/db/host")[1]["Flags"] == 42

    _, entries = client.kv.get(f"{base}/", recurse=True)
    assert [(e["Key"], e["Value"]) for e in entries] == [
        (f"{base}/config", b"v1"),
        (f"{base}/db/host", b"127.0.0.1"),
        (f"{base}/db/port", b"5432"),
    ]
    _, keys = client.kv.get(f"{base}/", keys=True)
    assert keys == [f"{base}/config", f"{base}/db/host", f"{base}/db/port"]
    _, folders = client.kv.get(f"{base}/", keys=True, separator="/")
    assert folders == [f"{base}/config", f"{base}/db/"]

    # A missing key, prefix or key listing is (index, None): the 404 still carries the index.
    missing_index, missing = client.kv.get(f"{base}/nothing")
    assert missing is None and int(missing_index) >= 1
    assert client.kv.get(f"{base}/nothing/", recurse=True)[1] is None
    assert client.kv.get(f"{base}/nothing/", keys=True)[1] is None

    assert client.kv.delete(f"{base}/db", recurse=True) is True
    assert client.kv.get(f"{base}/", keys=True)[1] == [f"{base}/config"]
    assert client.kv.delete(f"{base}/config") is True
    assert client.kv.get(f"{base}/config")[1] is None


def test_kv_binary_values_round_trip(client: consul.Consul) -> None:
    key = unique("bin")
    blob = bytes(range(256)) * 4  # every byte value, not UTF-8
    assert client.kv.put(key, blob) is True
    assert client.kv.get(key)[1]["Value"] == blob
    assert client.kv.put(f"{key}/empty", b"") is True
    assert client.kv.get(f"{key}/empty")[1]["Value"] is None  # Consul shows no value as null
    reversed_b64 = base64.b64encode(blob[::-1]).decode()
    result = client.txn.put([
        {"KV": {"Verb": "set", "Key": f"{key}/txn", "Value": reversed_b64}},
        {"KV": {"Verb": "get", "Key": key}},
    ])
    assert base64.b64decode(result["Results"][1]["KV"]["Value"]) == blob
    assert client.kv.get(f"{key}/txn")[1]["Value"] == blob[::-1]


def test_kv_cas_create_only_and_on_an_index(client: consul.Consul) -> None:
    key = unique("cas")
    assert client.kv.put(key, "first", cas=0) is True
    assert client.kv.put(key, "second", cas=0) is False  # exists: a CAS miss is 200 false
    _, entry = client.kv.get(key)
    assert entry["Value"] == b"first"

    stale_index = entry["ModifyIndex"]
    assert client.kv.put(key, "second", cas=stale_index) is True
    assert client.kv.put(key, "third", cas=stale_index) is False
    _, entry = client.kv.get(key)
    assert entry["Value"] == b"second"

    assert client.kv.delete(key, cas=stale_index) is False
    assert client.kv.delete(key, cas=entry["ModifyIndex"]) is True
    assert client.kv.get(key)[1] is None


def test_blocking_read_returns_soon_after_a_change(client: consul.Consul) -> None:
    key = unique("watch")
    client.kv.put(key, "before")
    index, _ = client.kv.get(key)

    def change() -> None:
        time.sleep(0.5)
        client.kv.put(key, "after")

    writer = threading.Thread(target=change)
    started = time.monotonic()
    writer.start()
    new_index, entry = client.kv.get(key, index=index, wait="20s")
    elapsed = time.monotonic() - started
    writer.join()
    assert entry["Value"] == b"after"
    assert int(new_index) > int(index)
    assert 0.4 < elapsed < 1.5, f"the blocked read returned after {elapsed:.2f}s"


def test_blocking_read_returns_at_the_wait_when_nothing_changes(client: consul.Consul) -> None:
    key = unique("quiet")
    client.kv.put(key, "same")
    index, _ = client.kv.get(key)
    started = time.monotonic()
    again, entry = client.kv.get(key, index=index, wait="1s")
    elapsed = time.monotonic() - started
    assert again == index and entry["Value"] == b"same"
    # The wait plus at most a sixteenth of jitter, plus scheduling slack.
    assert 1.0 <= elapsed < 1.0 + 1 / 16 + 0.5, f"returned after {elapsed:.2f}s"


def test_services_checks_health_and_catalog(
    client: consul.Consul, standalone: KonsulProcess
) -> None:
    name = unique("web")
    ttl_id, http_id = f"{name}-ttl", f"{name}-http"
    assert client.agent.service.register(
        name, service_id=ttl_id, address="127.0.0.1", port=9001, tags=["prod", "v1"],
        meta={"zone": "a"}, check=consul.Check.ttl("30s"),
    ) is True
    # An HTTP check the leader runs: Konsul's own liveness endpoint, always 200.
    live = f"http://{standalone.host}:{standalone.port}/health/live"
    assert client.agent.service.register(
        name, service_id=http_id, address="127.0.0.1", port=9002, tags=["prod"],
        check=consul.Check.http(live, interval="1s", timeout="1s", deregister="1m"),
    ) is True

    services = client.agent.services()
    assert services[ttl_id]["Service"] == name and services[ttl_id]["Port"] == 9001
    assert services[ttl_id]["Meta"] == {"zone": "a"}
    check_id = f"service:{ttl_id}"
    assert client.agent.checks()[check_id]["Status"] == "critical"  # TTL: until updated

    def passing_ids() -> list[str]:
        _, entries = client.health.service(name, passing=True)
        return sorted(e["Service"]["ID"] for e in entries)

    wait_until(lambda: passing_ids() == [http_id], 10, "the HTTP check to pass")
    assert client.agent.check.ttl_pass(check_id, "all good") is True
    assert passing_ids() == [http_id, ttl_id]
    _, checks = client.health.checks(name)
    ttl_check = next(c for c in checks if c["CheckID"] == check_id)
    assert ttl_check["Status"] == "passing" and ttl_check["Output"] == "all good"

    assert client.agent.check.ttl_warn(check_id, "slow") is True
    assert passing_ids() == [http_id]
    _, warning = client.health.state("warning")
    assert check_id in [c["CheckID"] for c in warning]
    assert client.agent.check.ttl_fail(check_id) is True
    _, critical = client.health.state("critical")
    assert check_id in [c["CheckID"] for c in critical]

    _, catalog = client.catalog.services()
    assert catalog[name] == ["prod", "v1"]
    _, instances = client.catalog.service(name)
    assert [i["ServiceID"] for i in instances] == [http_id, ttl_id]
    _, tagged = client.catalog.service(name, tag="v1")
    assert [i["ServiceID"] for i in tagged] == [ttl_id]
    _, entries = client.health.service(name)
    assert [e["Service"]["ID"] for e in entries] == [i["ServiceID"] for i in instances]
    home = instances[0]["Node"]
    _, node_info = client.catalog.node(home)
    assert ttl_id in node_info["Services"]
    _, nodes = client.catalog.nodes()
    assert home in [n["Node"] for n in nodes]

    assert client.agent.service.deregister(ttl_id) is True
    assert client.agent.service.deregister(http_id) is True
    assert name not in client.catalog.services()[1]
    assert client.health.service(name)[1] == []


def test_transactions(client: consul.Consul) -> None:
    base = unique("txn")

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    result = client.txn.put([
        {"KV": {"Verb": "set", "Key": f"{base}/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": f"{base}/b", "Value": b64("2"), "Flags": 7}},
        {"KV": {"Verb": "get", "Key": f"{base}/a"}},
        {"KV": {"Verb": "check-not-exists", "Key": f"{base}/c"}},
    ])
    assert result["Errors"] is None
    written_a, written_b, read_a = (r["KV"] for r in result["Results"])
    assert written_a["Key"] == f"{base}/a" and written_a["Value"] is None
    assert written_b["Flags"] == 7
    assert read_a["Value"] == b64("1") and read_a["ModifyIndex"] == written_a["ModifyIndex"]

    with pytest.raises(consul.ConsulException) as failed:  # a 409: nothing applied
        client.txn.put([
            {"KV": {"Verb": "set", "Key": f"{base}/c", "Value": b64("3")}},
            {"KV": {"Verb": "cas", "Key": f"{base}/a", "Value": b64("x"), "Index": 1}},
        ])
    assert "409" in str(failed.value)
    assert client.kv.get(f"{base}/c")[1] is None
