"""Listings are encoded once per query and index, and shared (konsul.api.encoded)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter

from konsul.api.encoded import ENCODED, EncodedAnswers
from konsul.node import Node
from tests.api.conftest import body_of

Client = Any


def test_an_answer_is_rebuilt_when_its_index_moves_and_the_cache_stays_bounded() -> None:
    cache = EncodedAnswers(max_entries=3, max_bytes=1000)
    builds: list[str] = []

    def build(what: str) -> Any:
        builds.append(what)
        return [what]

    assert cache.body("a", 1, lambda: build("a")) == b'["a"]'
    assert cache.body("a", 1, lambda: build("again")) == b'["a"]'  # shared
    assert cache.body("a", 2, lambda: build("a2")) == b'["a2"]'  # the index moved
    for key in "bcd":
        cache.body(key, 1, lambda k=key: build(k))
    assert cache.body("a", 2, lambda: build("a3")) == b'["a3"]'  # evicted, least recent first
    cache.body("big", 1, lambda: "x" * 2000)  # larger than the whole budget: not kept
    assert cache.body("big", 1, lambda: "y") == b'"y"'
    assert builds == ["a", "a2", "b", "c", "d", "a3"]


async def test_services_is_encoded_once_per_catalog_index(client: Client, node: Node) -> None:
    for i in range(3):
        register = {"id": f"web{i}", "name": "web", "tags": [f"t{i}"]}
        await body_of(await client.put("/register", json=register), 200)
    cache = client.server.app[ENCODED]
    before = cache.builds
    first = [await body_of(await client.get("/services"), 200) for _ in range(5)]
    assert cache.builds == before + 1 and all(f == first[0] for f in first)
    # another query, or the same one at another index, is encoded afresh
    await body_of(await client.get("/services?tag=t1"), 200)
    assert cache.builds == before + 2
    await body_of(await client.put("/register", json={"id": "db1", "name": "db"}), 200)
    after = await body_of(await client.get("/services"), 200)
    assert cache.builds == before + 3 and len(after) == 4
    v1 = [await body_of(await client.get("/v1/catalog/services"), 200) for _ in range(3)]
    assert cache.builds == before + 4 and v1[0] == {"db": [], "web": ["t0", "t1", "t2"]}


async def test_a_shared_answer_reaches_the_transport_as_the_cached_object(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers go out on their own, then the cached body object itself: no per-request copy
    of a large listing (``web.Response`` would join headers and body into a new object)."""
    assert web.Response._send_headers_immediately is False  # the switch SharedResponse turns
    for i in range(50):
        await body_of(await client.put("/register", json={"id": f"w{i}", "name": "web"}), 200)
    written: list[Any] = []
    write = StreamWriter._write

    def spy(writer: StreamWriter, chunk: Any) -> None:
        written.append(chunk)
        write(writer, chunk)

    monkeypatch.setattr(StreamWriter, "_write", spy)
    for path in ("/services", "/v1/catalog/service/web"):
        del written[:]
        resp = await client.get(path)
        body = await resp.read()
        assert resp.status == 200 and len(body) > 1000
        cached = [c for c in written if c == body]
        assert cached and all(type(c) is bytes for c in cached), (path, [len(c) for c in written])
        # and the same object for the next reader
        resp = await client.get(path)
        assert await resp.read() == body
        assert len([c for c in written if c is cached[0]]) == 2
