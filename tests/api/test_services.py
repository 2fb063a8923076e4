"""/register, /deregister, /heartbeat, /services and the health-check endpoints."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import body_of, error_of

Client = Any


async def register(client: Client, **service: Any) -> dict[str, Any]:
    body: dict[str, Any] = await body_of(await client.put("/register", json=service), 200)
    return body


async def test_register_defaults_id_to_name_and_lists_with_status(client: Client) -> None:
    written = await register(client, name="web", address="10.0.0.1", port=80, tags=["v1"])
    assert written["id"] == "web" and written["modify_index"] > 0
    resp = await client.get("/services")
    services = await body_of(resp, 200)
    assert len(services) == 1
    svc = services[0]
    assert {k: svc[k] for k in ("id", "name", "address", "port", "tags", "meta", "checks")} == {
        "id": "web", "name": "web", "address": "10.0.0.1", "port": 80, "tags": ["v1"],
        "meta": {}, "checks": [],
    }
    assert svc["status"] == "passing"
    assert int(resp.headers["X-Konsul-Index"]) >= written["modify_index"]
    assert resp.headers["X-Konsul-Known-Leader"] == "true"


async def test_filters_name_tags_meta_and_passing(client: Client) -> None:
    await register(client, name="api", id="api-1", tags=["v1", "blue"], meta={"zone": "a"})
    await register(client, name="api", id="api-2", tags=["v1"], meta={"zone": "b"})
    await register(client, name="api", id="api-3", tags=["v2"],
                   checks=[{"ttl": "30s"}])  # TTL checks start critical
    await register(client, name="db", id="db-1", tags=["v1"])

    async def ids(query: str) -> list[str]:
        return [s["id"] for s in await body_of(await client.get(f"/services?{query}"), 200)]

    assert await ids("name=api") == ["api-1", "api-2", "api-3"]
    assert await ids("tag=v1") == ["api-1", "api-2", "db-1"]
    assert await ids("tag=v1&tag=blue") == ["api-1"]
    assert await ids("meta.zone=b") == ["api-2"]
    assert await ids("name=api&passing") == ["api-1", "api-2"]
    assert await ids("name=nothing") == []
    await error_of(await client.get("/services?meta.=x"), 400)

    by_name = await body_of(await client.get("/services/api?tag=v1"), 200)
    assert [s["id"] for s in by_name] == ["api-1", "api-2"]
    critical = await body_of(await client.get("/services/api?passing"), 200)
    assert [s["id"] for s in critical] == ["api-1", "api-2"]
    statuses = {s["id"]: s["status"] for s in await body_of(await client.get("/services/api"))}
    assert statuses["api-3"] == "critical"
    resp = await client.get("/services/nothing")
    await error_of(resp, 404, "not found")
    assert "X-Konsul-Index" in resp.headers


async def test_register_validation(client: Client) -> None:
    bad: list[Any] = [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x", "port": 70000},
        {"name": "x", "port": "80"},
        {"name": "x", "tags": "a"},
        {"name": "x", "meta": {"bad key": "v"}},
        {"name": "x", "checks": [{"http": "ftp://x"}]},
        {"name": "x", "checks": [{"tcp": "nohost"}]},
        {"name": "x", "checks": [{"ttl": "soon"}]},
        {"name": "x", "checks": [{"ttl": "1s", "http": "http://a"}]},
        {"name": "x", "ttl": "-1s"},
        {"name": "x", "unknown": 1},
        {"name": "a/b"},
        ["name"],
    ]
    for doc in bad:
        await error_of(await client.put("/register", json=doc), 400, "bad request")
    await error_of(await client.put("/register", data=b"{oops"), 400)
    await error_of(await client.post("/register", json={"name": "x"}), 405)


async def test_deregister_and_heartbeat(client: Client) -> None:
    await register(client, name="hb", ttl="30s")
    assert (await body_of(await client.put("/heartbeat/hb"), 200))["id"] == "hb"
    assert (await body_of(await client.delete("/deregister/hb"), 200))["id"] == "hb"
    await error_of(await client.delete("/deregister/hb"), 404, "not found")
    await error_of(await client.put("/heartbeat/hb"), 404, "not found")
    assert await body_of(await client.get("/services"), 200) == []


async def test_health_checks_and_ttl_updates(client: Client) -> None:
    await register(client, name="svc", id="svc-1", checks=[
        {"id": "svc-ttl", "ttl": "1m"},
        {"id": "svc-http", "http": "http://127.0.0.1:9/health", "interval": "1h"},
    ])
    checks = await body_of(await client.get("/health/checks"), 200)
    by_id = {c["id"]: c for c in checks}
    assert set(by_id) == {"svc-ttl", "svc-http"}
    for check in checks:
        assert {"status", "output", "service_id"} <= set(check)
        assert check["service_id"] == "svc-1"
    assert by_id["svc-ttl"]["status"] == "critical"

    updated = await body_of(
        await client.put("/health/check/svc-ttl", json={"status": "passing", "output": "ok"}), 200
    )
    assert updated["status"] == "passing"
    of_service = await body_of(await client.get("/health/service/svc"), 200)
    ttl = next(c for c in of_service if c["id"] == "svc-ttl")
    assert (ttl["status"], ttl["output"]) == ("passing", "ok")

    await error_of(await client.put("/health/check/nope", json={"status": "passing"}), 404)
    await error_of(
        await client.put("/health/check/svc-http", json={"status": "passing"}), 400, "bad request"
    )
    for body in ({"status": "fine"}, {}, {"status": "passing", "output": 3},
                 {"status": "passing", "extra": 1}):
        await error_of(await client.put("/health/check/svc-ttl", json=body), 400)
    await error_of(await client.get("/health/service/nothing"), 404, "not found")


async def test_heartbeat_passes_ttl_checks(client: Client) -> None:
    await register(client, name="beat", checks=[{"ttl": "1m"}])
    await body_of(await client.put("/heartbeat/beat"), 200)
    statuses = [c["status"] for c in await body_of(await client.get("/health/service/beat"))]
    assert statuses == ["passing"]


async def test_a_check_id_owned_by_another_service_is_409(client: Client) -> None:
    await register(client, name="owner", checks=[{"id": "shared", "ttl": "1m"}])
    body = await error_of(
        await client.put("/register", json={"name": "thief", "checks": [{"id": "shared",
                                                                          "ttl": "1m"}]}),
        409, "conflict",
    )
    assert "shared" in body["message"]
    assert [s["id"] for s in await body_of(await client.get("/services"))] == ["owner"]
    # Importing the same clash is refused the same way, and changes nothing.
    doc = {"version": 1, "kv": [{"key": "imp/x", "value": "1"}],
           "services": [{"name": "thief", "checks": [{"id": "shared", "ttl": "1m"}]}]}
    await error_of(await client.post("/import", json=doc), 409, "conflict")
    await error_of(await client.get("/kv/imp/x"), 404)
