"""/health, /health/live, /health/ready and /metrics."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import body_of

Client = Any


async def test_health_document(client: Client) -> None:
    body = await body_of(await client.get("/health"), 200)
    assert body["status"] == "healthy"
    assert isinstance(body["version"], str) and body["version"]
    assert body["cluster"] == {"enabled": False, "state": "Leader", "leader": body["node_id"]}


async def test_live_and_ready(client: Client) -> None:
    assert (await body_of(await client.get("/health/live"), 200))["status"] == "alive"
    assert (await body_of(await client.get("/health/ready"), 200))["status"] == "ready"


async def test_metrics_exposes_raft_http_and_store_series(client: Client) -> None:
    await body_of(await client.put("/kv/m1", json={"value": "v"}), 200)
    await body_of(await client.put("/kv/m2", json={"value": "v"}), 200)
    await client.get("/kv/m1")
    await client.get("/no/such/route")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    for name in ("konsul_raft_state", "konsul_raft_is_leader", "konsul_raft_peers_total",
                 "konsul_raft_last_index", "konsul_raft_commit_index",
                 "konsul_raft_applied_index", "konsul_raft_apply_total",
                 "konsul_raft_apply_errors_total", "konsul_raft_apply_duration_seconds_bucket",
                 "konsul_raft_leader_changes_total", "konsul_raft_snapshot_total"):
        assert f"\n{name}" in text, name
    # Labelled by route pattern, never by key.
    assert 'konsul_http_requests_total{method="PUT",route="/kv/{key}",status="200"} 2.0' in text
    assert 'route="/kv/m1"' not in text
    assert 'route="unmatched",status="404"' in text
    assert "konsul_http_request_duration_seconds_bucket" in text
    assert "\nkonsul_kv_keys 2.0" in text
    assert "\nkonsul_services 0.0" in text
    assert "\nkonsul_blocking_reads_parked 0.0" in text
