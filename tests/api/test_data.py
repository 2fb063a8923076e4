"""/export and /import: a document that round-trips into a fresh node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from konsul.api import create_app
from konsul.node import Node
from tests.api.conftest import body_of, error_of, settings_for, wait_until

Client = Any


async def fill(client: Client) -> None:
    for i in range(5):
        await body_of(await client.put(f"/kv/cfg/{i}", json={"value": f"v{i}", "flags": i}), 200)
    service = {"name": "web", "id": "web-1", "address": "10.0.0.1", "port": 80, "tags": ["a"],
               "meta": {"zone": "z"}, "checks": [{"id": "web-ttl", "ttl": "30s"}]}
    await body_of(await client.put("/register", json=service), 200)


async def test_export_then_import_into_a_fresh_node(
    client: Client, tmp_path: Path, aiohttp_client: Any
) -> None:
    await fill(client)
    resp = await client.get("/export")
    document = await body_of(resp, 200)
    assert document["version"] == 1 and document["index"] > 0
    assert [e["key"] for e in document["kv"]] == [f"cfg/{i}" for i in range(5)]
    assert document["services"][0]["id"] == "web-1"
    assert "X-Konsul-Index" in resp.headers

    fresh = Node(settings_for(tmp_path / "fresh"))
    await fresh.start()
    try:
        await wait_until(fresh.is_ready)
        other = await aiohttp_client(create_app(fresh))
        result = await body_of(await other.post("/import", json=document), 200)
        assert (result["kv"], result["services"]) == (5, 1)
        again = await body_of(await other.get("/export"), 200)
        assert again["kv"] == document["kv"] and again["services"] == document["services"]
        entry = await body_of(await other.get("/kv/cfg/3"), 200)
        assert (entry["value"], entry["flags"]) == ("v3", 3)
    finally:
        await fresh.stop()


async def test_import_is_idempotent(client: Client) -> None:
    await fill(client)
    document = await body_of(await client.get("/export"), 200)
    await body_of(await client.post("/import", json=document), 200)
    again = await body_of(await client.get("/export"), 200)
    assert again["kv"] == document["kv"] and again["services"] == document["services"]


async def test_empty_import_is_fine(client: Client) -> None:
    result = await body_of(await client.post("/import", json={"version": 1}), 200)
    assert (result["kv"], result["services"]) == (0, 0)


async def test_invalid_documents_change_nothing(client: Client) -> None:
    bad: list[Any] = [
        [],
        {"version": 2},
        {"version": 1, "kv": "x"},
        {"version": 1, "kv": [{"key": "ok", "value": "v"}, {"key": "/bad", "value": "v"}]},
        {"version": 1, "services": [{"id": "nameless"}]},
        {"version": 1, "extra": []},
    ]
    for doc in bad:
        await error_of(await client.post("/import", json=doc), 400, "bad request")
    await error_of(await client.post("/import", data=b"{"), 400)
    assert await body_of(await client.get("/kv/ok")) == {
        "error": "not found", "message": "Key 'ok' not found."
    }
    big = {"version": 1, "kv": [{"key": "k", "value": "x" * (512 * 1024 + 1)}]}
    await error_of(await client.post("/import", json=big), 413, "too large")
