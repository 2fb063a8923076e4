"""The parts of ``/v1`` that need no cluster: Consul service definitions, read options, and what a
follower answers when forwarding a write goes wrong (a real node in this process whose
``propose`` says another member leads, as a follower's does)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from konsul.api import create_app
from konsul.api.forward import FORWARDED_HEADER
from konsul.api.v1 import commit
from konsul.api.v1.definition import service_instance
from konsul.api.v1.query import MAX_WAIT, jittered, read_options
from konsul.errors import BadRequest, NotLeader
from konsul.node import Node
from konsul.raft.types import Member
from tests.api.conftest import ClientFactory, KonsulTestServer
from tests.api.conftest import node as node  # the fixture: a real standalone node

# ------------------------------------------------------------------------- service definitions


def test_definitions_match_field_names_in_any_case_with_aliases_and_nanoseconds() -> None:
    body = {
        "NAME": "web", "id": "web-1", "Port": 8080, "tags": ["a"], "Meta": {"Zone": "x"},
        "enable_tag_override": True, "Weights": {"Passing": 3, "Warning": 1},
        "Check": {"HTTP": "http://127.0.0.1:1/health", "Interval": 10_000_000_000,
                  "deregister_critical_service_after": "90s", "Notes": "n"},
        "checks": [{"TTL": "15s", "CheckID": "beat", "status": "passing"}],
    }
    assert service_instance(body, "127.0.0.9") == {
        "name": "web", "id": "web-1", "port": 8080, "tags": ["a"],
        "meta": {"Zone": "x"},  # map contents keep their case
        "address": "127.0.0.9",  # none given: the caller's
        "checks": [
            {"http": "http://127.0.0.1:1/health", "interval": 10.0,
             "deregister_critical_after": 90.0},
            {"id": "beat", "ttl": 15.0},
        ],
    }


@pytest.mark.parametrize("body, reason", [
    ({"Port": 1}, "Missing service name"),
    ({"Name": "x", "Connect": {"SidecarService": {}}}, "Connect"),
    ({"Name": "x", "Kind": "connect-proxy"}, "kind"),
    ({"Name": "x", "Bogus": 1}, "bogus"),
    ({"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}, "args"),
    ({"Name": "x", "Check": {"GRPC": "127.0.0.1:1", "Interval": "10s"}}, "grpc"),
    ({"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1", "Method": "POST"}}, "GET only"),
    ({"Name": "x", "Check": {"HTTP": "https://127.0.0.1:1", "TLSSkipVerify": True}}, "verify"),
    ({"Name": "x", "Check": {"TTL": "soon"}}, "invalid duration"),
    ({"Name": "x", "Checks": {"TTL": "1s"}}, "must be a list"),
])
def test_definitions_konsul_cannot_honour_are_refused(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        service_instance(body, "127.0.0.1")
    assert reason.lower() in refused.value.message.lower()


# ------------------------------------------------------------------------------- read options


def options(query: str) -> Any:
    return read_options(make_mocked_request("GET", "/v1/catalog/services" + query))


def test_wait_is_capped_at_ten_minutes_and_defaults_to_five() -> None:
    assert options("?index=7&wait=20m").wait == MAX_WAIT == 600
    assert options("?index=7").wait == 300
    assert options("?index=7&wait=0s").wait == 300  # Consul: a zero wait is the default
    assert options("?index=7&wait=120000ms").wait == 120
    assert options("?index=7").min_index == 7 and options("").min_index == 0


def test_jitter_adds_at_most_a_sixteenth() -> None:
    assert jittered(160.0, 0.0) == 160.0
    assert jittered(160.0, 0.999999) == pytest.approx(170.0, abs=1e-3)
    assert jittered(MAX_WAIT, 0.999999) < MAX_WAIT * 17 / 16


# ----------------------------------------------------------------------- forwarding failures


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A leader that takes the whole request and dies before answering."""
    await reader.read(65536)
    writer.close()


def act_as_follower(monkeypatch: pytest.MonkeyPatch, node: Node, leader_http: str) -> None:
    leader = Member("node9", "127.0.0.1:1", True, leader_http)

    async def propose(data: bytes) -> object:
        raise NotLeader(leader)

    monkeypatch.setattr(node, "propose", propose)


async def test_a_forwarded_write_whose_answer_is_lost_is_a_500_never_a_success(
    node: Node, aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    act_as_follower(monkeypatch, node, f"127.0.0.1:{port}")
    client = await aiohttp_client(KonsulTestServer(create_app(node)))
    try:
        resp = await client.put("/v1/kv/lost", data=b"v")
        text = await resp.text()
    finally:
        server.close()
    assert resp.status == 500 and "outcome is unknown" in text
    assert resp.content_type == "text/plain"


async def test_a_write_waits_for_a_reachable_leader_then_fails_with_nothing_written(
    node: Node, aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_nobody = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
    port = with_nobody.sockets[0].getsockname()[1]
    with_nobody.close()
    await with_nobody.wait_closed()  # connections to it are now refused: nothing is sent
    act_as_follower(monkeypatch, node, f"127.0.0.1:{port}")
    monkeypatch.setattr(commit, "HOLD_SECONDS", 0.3)
    client = await aiohttp_client(KonsulTestServer(create_app(node)))
    resp = await client.put("/v1/kv/nowhere", data=b"v")
    assert resp.status == 500 and await resp.text() == "No cluster leader"


async def test_a_forwarded_write_to_a_member_that_no_longer_leads_is_not_forwarded_again(
    node: Node, aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    act_as_follower(monkeypatch, node, "127.0.0.1:1")
    client = await aiohttp_client(KonsulTestServer(create_app(node)))
    resp = await client.put("/v1/kv/moved", data=b"v", headers={FORWARDED_HEADER: "node2"})
    assert resp.status == 503 and resp.headers[commit.NOT_LEADER_HEADER] == "true"
    assert node.store.kv_get("moved") is None
