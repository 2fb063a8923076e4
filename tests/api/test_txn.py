"""/txn: all-or-nothing KV transactions."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import body_of, error_of

Client = Any


async def test_transaction_applies_every_op_in_one_index(client: Client) -> None:
    await body_of(await client.put("/kv/gone", json={"value": "x"}), 200)
    ops = [
        {"verb": "set", "key": "t/a", "value": "1"},
        {"verb": "cas", "key": "t/b", "value": "2", "index": 0},
        {"verb": "get", "key": "t/a"},
        {"verb": "delete", "key": "gone"},
        {"verb": "check-index", "key": "t/never", "index": 0},
    ]
    body = await body_of(await client.post("/txn", json={"ops": ops}), 200)
    results = body["results"]
    assert len(results) == 5
    index = results[0]["modify_index"]
    assert results[1]["modify_index"] == index, "one log entry for the whole transaction"
    assert results[2]["value"] == "1"
    assert results[3] == {"key": "gone", "deleted": 1}
    await error_of(await client.get("/kv/gone"), 404)
    assert (await body_of(await client.get("/kv/t/b"), 200))["value"] == "2"


async def test_failed_transaction_changes_nothing_and_lists_errors(client: Client) -> None:
    await body_of(await client.put("/kv/x", json={"value": "orig"}), 200)
    ops = [
        {"verb": "set", "key": "x", "value": "changed"},
        {"verb": "cas", "key": "x", "value": "y", "index": 999999},
        {"verb": "get", "key": "missing"},
    ]
    body = await error_of(await client.post("/txn", json={"ops": ops}), 409, "conflict")
    errors = body["errors"]
    assert errors and all(set(e) >= {"op_index", "message"} for e in errors)
    assert errors[0]["op_index"] == 1
    assert (await body_of(await client.get("/kv/x"), 200))["value"] == "orig"


async def test_malformed_transactions_are_400(client: Client) -> None:
    bad: list[Any] = [
        {},
        {"ops": []},
        {"ops": "set"},
        {"ops": [{"verb": "explode", "key": "a"}]},
        {"ops": [{"verb": "set", "key": "a"}]},
        {"ops": [{"verb": "set", "key": "/abs", "value": "v"}]},
        {"ops": [{"verb": "cas", "key": "a", "value": "v"}]},
        {"ops": [{"verb": "set", "key": "a", "value": "v"}] * 65},
        {"ops": [], "extra": True},
        [1],
    ]
    for doc in bad:
        await error_of(await client.post("/txn", json=doc), 400, "bad request")


async def test_oversized_value_in_a_transaction_is_413(client: Client) -> None:
    ops = [{"verb": "set", "key": "big", "value": "x" * (512 * 1024 + 1)}]
    await error_of(await client.post("/txn", json={"ops": ops}), 413, "too large")


async def test_txn_only_accepts_post(client: Client) -> None:
    resp = await client.get("/txn")
    await error_of(resp, 405, "method not allowed")
    assert "POST" in resp.headers["Allow"]
