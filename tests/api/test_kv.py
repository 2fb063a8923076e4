"""/kv: get, put, delete, list; CAS; validation; read headers, consistency and blocking reads."""

from __future__ import annotations

import asyncio
from typing import Any

from yarl import URL

from tests.api.conftest import body_of, error_of

Client = Any


async def put(client: Client, key: str, value: str, **kw: Any) -> dict[str, Any]:
    resp = await client.put(f"/kv/{key}", json={"value": value, **kw})
    body: dict[str, Any] = await body_of(resp, 200)
    return body


async def test_put_then_get_returns_the_documented_shapes(client: Client) -> None:
    written = await put(client, "app/config", "v1", flags=42)
    assert set(written) == {"key", "create_index", "modify_index"}
    assert written["key"] == "app/config"
    assert written["create_index"] == written["modify_index"] > 0
    resp = await client.get("/kv/app/config")
    entry = await body_of(resp, 200)
    assert entry == {
        "key": "app/config",
        "value": "v1",
        "flags": 42,
        "create_index": written["create_index"],
        "modify_index": written["modify_index"],
    }
    assert resp.headers["X-Konsul-Index"] == str(written["modify_index"])
    assert resp.headers["X-Konsul-Known-Leader"] == "true"
    assert resp.headers["X-Konsul-Last-Contact"] == "0"


async def test_update_keeps_create_index_and_moves_modify_index(client: Client) -> None:
    first = await put(client, "k", "1")
    second = await put(client, "k", "2")
    assert second["create_index"] == first["create_index"]
    assert second["modify_index"] > first["modify_index"]


async def test_post_is_an_alias_of_put(client: Client) -> None:
    await body_of(await client.post("/kv/p", json={"value": "x"}), 200)
    assert (await body_of(await client.get("/kv/p"), 200))["value"] == "x"


async def test_missing_key_is_404_json_with_read_headers(client: Client) -> None:
    resp = await client.get("/kv/absent")
    body = await error_of(resp, 404, "not found")
    assert "absent" in body["message"]
    assert resp.headers["X-Konsul-Index"].isdigit()
    assert resp.headers["X-Konsul-Known-Leader"] == "true"


async def test_keys_may_hold_encoded_characters(client: Client) -> None:
    await put(client, "a%20b%3Fc", "spaced")
    entry = await body_of(await client.get("/kv/a%20b%3Fc"), 200)
    assert entry["key"] == "a b?c"


async def test_invalid_keys_are_400(client: Client) -> None:
    for raw in ("/kv//leading", "/kv/a/%2E%2E/b", "/kv/ctl%01char", "/kv/" + "x" * 513):
        path = URL(raw, encoded=True)  # as sent: no client-side normalisation of '..'
        resp = await client.put(path, json={"value": "v"})
        await error_of(resp, 400, "bad request")
        await error_of(await client.get(path), 400, "bad request")


async def test_bad_bodies_are_400(client: Client) -> None:
    cases: list[Any] = [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"just a string"',
        b'{"flags": 1}',
        b'{"value": 5}',
        b'{"value": "v", "flags": -1}',
        b'{"value": "v", "flags": "x"}',
        b'{"value": "v", "extra": 1}',
        b'{"value": "v", "cas": "nope"}',
        b"\xff\xfe",
    ]
    for raw in cases:
        resp = await client.put("/kv/k", data=raw, headers={"Content-Type": "application/json"})
        await error_of(resp, 400, "bad request")


async def test_value_over_512_kib_is_413_and_at_the_limit_is_fine(client: Client) -> None:
    limit = 512 * 1024
    await put(client, "big", "x" * limit)
    assert len((await body_of(await client.get("/kv/big"), 200))["value"]) == limit
    await error_of(await client.put("/kv/big", json={"value": "x" * (limit + 1)}), 413, "too large")
    # Multi-byte characters count in bytes: 131073 four-byte characters exceed 512 KiB.
    await error_of(await client.put("/kv/big", json={"value": "😀" * (limit // 4 + 1)}), 413)


async def test_huge_body_is_413_json_without_reading_it_all(client: Client) -> None:
    resp = await client.put("/kv/k", data=b"x" * (8 * 1024 * 1024),
                            headers={"Content-Type": "application/json"})
    await error_of(resp, 413, "too large")


async def test_cas_in_query_and_body(client: Client) -> None:
    # cas=0: create only.
    created = await body_of(await client.put("/kv/c?cas=0", json={"value": "a"}), 200)
    body = await error_of(await client.put("/kv/c?cas=0", json={"value": "b"}), 409, "conflict")
    assert body["current_index"] == created["modify_index"]
    # Wrong index in the body, then the right one.
    await error_of(await client.put("/kv/c", json={"value": "b", "cas": 999999}), 409)
    ok = await body_of(
        await client.put("/kv/c", json={"value": "b", "cas": created["modify_index"]}), 200
    )
    assert (await body_of(await client.get("/kv/c"), 200))["value"] == "b"
    # Query and body disagreeing is a malformed request, not a conflict.
    await error_of(await client.put("/kv/c?cas=1", json={"value": "z", "cas": 2}), 400)
    await error_of(await client.put("/kv/c?cas=-3", json={"value": "z"}), 400)
    # Delete with CAS.
    await error_of(await client.delete(f"/kv/c?cas={created['modify_index']}"), 409)
    gone = await body_of(await client.delete(f"/kv/c?cas={ok['modify_index']}"), 200)
    assert gone == {"deleted": 1}


async def test_delete_and_recursive_delete(client: Client) -> None:
    for key in ("d/1", "d/2", "d/sub/3", "e"):
        await put(client, key, "v")
    assert await body_of(await client.delete("/kv/e"), 200) == {"deleted": 1}
    assert await body_of(await client.delete("/kv/e"), 200) == {"deleted": 0}
    assert await body_of(await client.delete("/kv/d/?recurse"), 200) == {"deleted": 3}
    assert await body_of(await client.get("/kv/?prefix=d/"), 200) == []
    await error_of(await client.delete("/kv/x?recurse&cas=1"), 400)


async def test_delete_everything_needs_recurse(client: Client) -> None:
    await put(client, "a", "1")
    await put(client, "b", "1")
    await error_of(await client.delete("/kv/"), 400, "bad request")
    assert await body_of(await client.delete("/kv/?recurse"), 200) == {"deleted": 2}


async def test_listing_sorted_with_keys_and_separator(client: Client) -> None:
    for key in ("web/b", "web/a", "web/sub/x", "web/sub/y", "other"):
        await put(client, key, key.upper())
    resp = await client.get("/kv/?prefix=web/")
    entries = await body_of(resp, 200)
    assert [e["key"] for e in entries] == ["web/a", "web/b", "web/sub/x", "web/sub/y"]
    assert entries[0]["value"] == "WEB/A"
    assert set(entries[0]) == {"key", "value", "flags", "create_index", "modify_index"}
    assert int(resp.headers["X-Konsul-Index"]) >= max(e["modify_index"] for e in entries)
    names = await body_of(await client.get("/kv/?prefix=web/&keys"), 200)
    assert names == ["web/a", "web/b", "web/sub/x", "web/sub/y"]
    folded = await body_of(await client.get("/kv/?prefix=web/&keys&separator=/"), 200)
    assert folded == ["web/a", "web/b", "web/sub/"]
    everything = await body_of(await client.get("/kv/"), 200)
    assert everything[0]["key"] == "other"
    await error_of(await client.get("/kv/?prefix=/abs"), 400)


async def test_consistent_and_stale_reads(client: Client) -> None:
    await put(client, "r", "v")
    resp = await client.get("/kv/r?consistent")
    assert (await body_of(resp, 200))["value"] == "v"
    assert resp.headers["X-Konsul-Known-Leader"] == "true"
    assert (await body_of(await client.get("/kv/r?stale"), 200))["value"] == "v"
    await error_of(await client.get("/kv/r?stale&consistent"), 400)
    lst = await client.get("/kv/?prefix=r&consistent")
    assert [e["key"] for e in await body_of(lst, 200)] == ["r"]


async def test_blocking_read_wakes_on_a_write(client: Client) -> None:
    first = await put(client, "watched", "1")
    index = first["modify_index"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiter = asyncio.create_task(client.get(f"/kv/watched?index={index}&wait=30s"))
    await asyncio.sleep(0.2)
    assert not waiter.done(), "a blocking read must wait while the index is unchanged"
    second = await put(client, "watched", "2")
    resp = await asyncio.wait_for(waiter, 10)
    entry = await body_of(resp, 200)
    assert entry["value"] == "2"
    assert resp.headers["X-Konsul-Index"] == str(second["modify_index"])
    assert loop.time() - started < 10


async def test_blocking_read_times_out_with_the_unchanged_answer(client: Client) -> None:
    first = await put(client, "still", "1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.get(f"/kv/still?index={first['modify_index']}&wait=300ms")
    assert (await body_of(resp, 200))["value"] == "1"
    assert loop.time() - started >= 0.29
    assert resp.headers["X-Konsul-Index"] == str(first["modify_index"])


async def test_blocking_read_returns_at_once_when_index_is_behind(client: Client) -> None:
    await put(client, "old", "1")
    resp = await asyncio.wait_for(client.get("/kv/old?index=0&wait=1m"), 5)
    assert (await body_of(resp, 200))["value"] == "1"


async def test_blocking_list_wakes_on_a_delete_under_the_prefix(client: Client) -> None:
    await put(client, "w/a", "1")
    resp = await client.get("/kv/?prefix=w/")
    index = int(resp.headers["X-Konsul-Index"])
    waiter = asyncio.create_task(client.get(f"/kv/?prefix=w/&index={index}&wait=30s"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await body_of(await client.delete("/kv/w/a"), 200)
    assert await body_of(await asyncio.wait_for(waiter, 10), 200) == []


async def test_blocking_read_of_a_missing_key_wakes_when_it_appears(client: Client) -> None:
    resp = await client.get("/kv/later")
    index = int(resp.headers["X-Konsul-Index"])
    waiter = asyncio.create_task(client.get(f"/kv/later?index={index}&wait=30s"))
    await asyncio.sleep(0.1)
    await put(client, "later", "here")
    assert (await body_of(await asyncio.wait_for(waiter, 10), 200))["value"] == "here"


async def test_bad_blocking_parameters_are_400(client: Client) -> None:
    for query in ("index=abc", "index=-1", "index=1&wait=soon", "index=1&wait=5"):
        await error_of(await client.get(f"/kv/k?{query}"), 400, "bad request")
        await error_of(await client.get(f"/kv/?{query}"), 400, "bad request")
    await error_of(await client.put("/kv/k?cas=1.5", json={"value": "v"}), 400, "bad request")


async def test_a_value_that_is_not_text_reads_back_as_base64_without_losing_a_byte(
    client: Client,
) -> None:
    """Values are bytes. JSON strings cannot hold every byte string, so a value that is not
    UTF-8 text shows as ``"value": null`` with ``value_base64``; PUT takes that form too."""
    written = await body_of(await client.put("/kv/bin", json={"value_base64": "AP+AZQ=="}), 200)
    entry = await body_of(await client.get("/kv/bin"), 200)
    assert entry == {"key": "bin", "value": None, "value_base64": "AP+AZQ==", "flags": 0,
                     "create_index": written["create_index"],
                     "modify_index": written["modify_index"]}
    listed = await body_of(await client.get("/kv/?prefix=bin"), 200)
    assert listed == [entry]
    # Text given as base64 is text: it reads back exactly as if it had been sent as a string.
    await body_of(await client.put("/kv/text", json={"value_base64": "aMOp"}), 200)
    assert (await body_of(await client.get("/kv/text"), 200))["value"] == "hé"
    both = await client.put("/kv/x", json={"value": "a", "value_base64": "YQ=="})
    await error_of(both, 400, "bad request")
