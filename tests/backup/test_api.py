"""The backup endpoints on a real in-process node: a backup streamed, restored, refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from konsul.api import create_app
from konsul.backup import file
from konsul.node import Node
from tests.api.conftest import (
    ClientFactory,
    KonsulTestServer,
    error_of,
    settings_for,
    wait_until,
)
from tests.api.conftest import client as client  # the fixtures: a real standalone node, its app
from tests.api.conftest import node as node
from tests.processes import free_port

Client = TestClient[Any, Any]


async def fill(client: Client, keys: int) -> None:
    for i in range(keys):
        assert (await client.put(f"/kv/k/{i:03}", json={"value": f"v{i}"})).status == 200
    resp = await client.put("/register", json={"name": "web", "port": 80, "checks": [
        {"ttl": "30s"}]})
    assert resp.status == 200


async def save(client: Client) -> bytes:
    resp = await client.get("/cluster/snapshot")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/octet-stream"
    data = await resp.read()
    checked = file.inspect([data])
    assert resp.headers["X-Konsul-Snapshot-Index"] == str(checked.header.index)
    assert resp.headers["X-Konsul-Snapshot-Term"] == str(checked.header.term)
    assert resp.headers["Content-Disposition"].endswith(f'-{checked.header.index}.snap"')
    return data


async def export(client: Client) -> dict[str, Any]:
    doc: dict[str, Any] = await (await client.get("/export")).json()
    doc.pop("index")
    return doc


async def test_a_backup_restores_onto_the_running_node(client: Client) -> None:
    await fill(client, 20)
    data = await save(client)
    checked = file.inspect([data])
    assert (checked.kv_count, checked.service_count, checked.check_count) == (20, 1, 1)
    saved = await export(client)
    await client.put("/kv/k/after", json={"value": "gone after the restore"})
    await client.delete("/kv/k/000")
    resp = await client.post("/cluster/restore", data=data)
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["kv_keys"] == 20 and done["source"]["index"] == checked.header.index
    assert await export(client) == saved
    entry = await (await client.get("/kv/k/001")).json()
    assert entry["modify_index"] == done["rows_index"] < done["index"]
    after = await (await client.put("/kv/k/new", json={"value": "x"})).json()
    assert after["modify_index"] > done["index"]


async def test_bad_files_are_refused_and_change_nothing(client: Client) -> None:
    await fill(client, 5)
    data = await save(client)
    before = await export(client)
    status = await (await client.get("/cluster/status")).json()
    for bad, reason in [
        (data[:-10], "truncated"),
        (data[:60] + bytes([data[60] ^ 4]) + data[61:], "SHA-256"),
        (b'{"kv": []}', "/export document"),
        (b"", "truncated"),
    ]:
        body = await error_of(await client.post("/cluster/restore", data=bad), 400,
                              "bad request")
        assert reason in body["message"] and "Nothing was changed" in body["message"]
    assert await export(client) == before
    again = await (await client.get("/cluster/status")).json()
    assert again["applied_index"] == status["applied_index"]  # nothing went through the log


async def test_cluster_operations_of_backups_need_a_cluster(client: Client) -> None:
    await error_of(await client.post("/cluster/recover"), 503, "clustering not enabled")
    data = await save(client)
    await error_of(await client.post("/cluster/bootstrap", data=data), 503,
                   "clustering not enabled")


async def test_an_empty_clustered_node_bootstraps_from_a_backup(
    client: Client, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    await fill(client, 7)
    data = await save(client)
    source_cluster = file.inspect([data]).header.cluster_id
    raft = f"127.0.0.1:{free_port('127.0.0.1')}"
    empty = Node(settings_for(tmp_path / "empty", KONSUL_RAFT_ENABLED="true",
                              KONSUL_RAFT_NODE_ID="seeded", KONSUL_RAFT_BIND_ADDR=raft,
                              KONSUL_RAFT_ADVERTISE_ADDR=raft))
    await empty.start()
    try:
        other = await aiohttp_client(KonsulTestServer(create_app(empty)))
        resp = await other.post("/cluster/bootstrap", data=data)
        assert resp.status == 200, await resp.text()
        done = await resp.json()
        assert done["cluster_id"] not in ("", source_cluster) and done["kv_keys"] == 7
        await wait_until(empty.is_ready)
        assert await export(other) == await export(client)
        status = await (await other.get("/cluster/status")).json()
        assert status["cluster_id"] == done["cluster_id"] and status["state"] == "Leader"
        assert status["applied_index"] > file.inspect([data]).header.index  # its log goes on
        await error_of(await other.post("/cluster/bootstrap", data=data), 409, "conflict")
        await error_of(await other.post("/cluster/recover"), 409, "conflict")
    finally:
        await empty.stop()
