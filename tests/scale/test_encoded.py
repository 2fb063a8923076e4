"""Listings are encoded once per query and index, and shared (konsul.api.encoded)."""

from __future__ import annotations

from typing import Any

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
