"""Listings are encoded once per query and index, and shared (konsul.api.encoded)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter

from konsul.api import encoded
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


async def test_a_large_shared_answer_reaches_the_transport_as_the_cached_object(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers go out on their own, then the cached body object itself: no per-request copy
    of a large listing (``web.Response`` would join headers and body into a new object). A
    small answer goes out in one write, headers and body together."""
    assert web.Response._send_headers_immediately is False  # the switch SharedResponse turns
    for i in range(20):
        await body_of(await client.put("/register", json={"id": f"w{i}", "name": "web"}), 200)
    written: list[Any] = []  # what the server hands its transport, write by write
    write, writelines = StreamWriter._write, StreamWriter._writelines

    def spy(writer: StreamWriter, chunk: Any) -> None:
        if bytes(chunk[:4]) != b"GET ":  # (the test client's requests)
            written.append(chunk)
        write(writer, chunk)

    def spy_lines(writer: StreamWriter, chunks: Any) -> None:
        chunks = tuple(chunks)
        written.append(b"".join(chunks))
        writelines(writer, chunks)

    monkeypatch.setattr(StreamWriter, "_write", spy)
    monkeypatch.setattr(StreamWriter, "_writelines", spy_lines)

    async def get(path: str) -> bytes:
        del written[:]
        resp = await client.get(path)
        assert resp.status == 200
        return await resp.read()

    for path in ("/services", "/v1/catalog/service/web"):
        monkeypatch.setattr(encoded, "UNJOINED_MIN", 1 << 30)
        small = await get(path)
        assert len(written) == 1 and written[0].endswith(small)  # headers and body in one
        monkeypatch.setattr(encoded, "UNJOINED_MIN", len(small))
        body = await get(path)
        assert body == small and len(written) == 2 and written[1] is not small
        cached = written[1]
        assert type(cached) is bytes and cached == body  # the body alone, after the headers
        await get(path)
        assert written[1] is cached  # the same object for the next reader
