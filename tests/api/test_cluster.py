"""/cluster/* on a standalone node: status shapes, and 503 for membership operations."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import body_of, error_of

Client = Any

GUIDE_FIELDS = {"node_id", "state", "leader_id", "leader_addr", "peers", "commit_index",
                "applied_index", "last_index", "fsm_pending"}
API_FIELDS = {
    "term", "last_contact_ms", "last_snapshot_index", "address", "http_address", "catching_up"
}


async def test_status_has_the_guide_fields_and_the_api_additions(client: Client) -> None:
    await body_of(await client.put("/kv/a", json={"value": "1"}), 200)
    resp = await client.get("/cluster/status")
    status = await body_of(resp, 200)
    assert set(status) >= GUIDE_FIELDS | API_FIELDS
    assert status["state"] == "Leader"
    assert status["leader_id"] == status["node_id"]
    assert status["applied_index"] >= 1
    assert status["commit_index"] >= status["applied_index"] - status["fsm_pending"]
    assert [p["id"] for p in status["peers"]] == [status["node_id"]]
    assert status["peers"][0]["voter"] is True
    assert status["catching_up"] is False  # a bootstrapped node votes
    assert resp.headers["X-Konsul-Known-Leader"] == "true"


async def test_leader_and_peers(client: Client) -> None:
    status = await body_of(await client.get("/cluster/status"), 200)
    leader = await body_of(await client.get("/cluster/leader"), 200)
    assert set(leader) == {"leader_id", "leader_addr", "leader_http_addr"}
    assert leader["leader_id"] == status["node_id"]
    peers = await body_of(await client.get("/cluster/peers"), 200)
    assert list(peers) == ["peers"]
    assert {"id", "address", "voter"} <= set(peers["peers"][0])


async def test_membership_operations_need_clustering(client: Client) -> None:
    calls = [
        client.post("/cluster/join", json={"node_id": "n2", "address": "127.0.0.2:7000"}),
        client.delete("/cluster/leave/n2"),
        client.post("/cluster/transfer-leadership", json={}),
        client.post("/cluster/transfer-leadership"),
        client.post("/cluster/bootstrap"),
    ]
    for call in calls:
        resp = await call
        await error_of(resp, 503, "clustering not enabled")
        assert resp.headers["Retry-After"] == "1"


async def test_join_validates_its_body_first(client: Client) -> None:
    bad: list[Any] = [
        {},
        {"node_id": "n2"},
        {"address": "127.0.0.2:7000"},
        {"node_id": "", "address": "127.0.0.2:7000"},
        {"node_id": "n2", "address": "no-port"},
        {"node_id": "n2", "address": "h:99999"},
        {"node_id": "n2", "address": "h:7000", "http_address": 5},
        {"node_id": "n2", "address": "h:7000", "bogus": 1},
        ["n2"],
    ]
    for doc in bad:
        await error_of(await client.post("/cluster/join", json=doc), 400, "bad request")
    await error_of(await client.post("/cluster/transfer-leadership", json={"node_id": 3}), 400)


async def test_snapshot_reports_index_term_and_size(client: Client) -> None:
    await body_of(await client.put("/kv/s", json={"value": "v"}), 200)
    snap = await body_of(await client.post("/cluster/snapshot"), 200)
    assert set(snap) == {"index", "term", "size_bytes"}
    assert snap["index"] >= 1 and snap["term"] >= 1 and snap["size_bytes"] > 0
    status = await body_of(await client.get("/cluster/status"), 200)
    assert status["last_snapshot_index"] == snap["index"]
