"""Blocking reads are woken by what they watch (konsul.watch), on a real standalone node: a
reader re-checks its condition only when its key, prefix, service or table changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from konsul import watch
from konsul.node import Node
from konsul.store import commands
from tests.inprocess import until


class Reader:
    """A parked blocking read that counts how often it had to look at the store."""

    def __init__(self, node: Node, topic: watch.Topic, index_fn: Callable[[], int]) -> None:
        self.looks = 0
        after = index_fn()

        def changed() -> bool:
            self.looks += 1
            return index_fn() > after

        self.task = asyncio.create_task(node.watches.wait(topic, changed, 30))

    @property
    def answered(self) -> bool:
        return self.task.done()


async def put(node: Node, key: str, value: bytes = b"v") -> None:
    await node.propose(commands.kv_set(key, value, 0, None))


async def register(node: Node, sid: str, name: str, checks: list[dict[str, str]]) -> None:
    await node.propose(commands.service_register({"id": sid, "name": name, "checks": checks}))


async def parked(node: Node, count: int) -> None:
    await until(lambda: node.watches.parked == count, 5, f"{count} parked readers")


async def test_a_write_wakes_only_the_readers_of_that_key_and_of_prefixes_over_it(
    node: Node,
) -> None:
    await put(node, "app/a")
    store = node.store

    def key_index(key: str) -> Callable[[], int]:
        return lambda: (e.modify_index if (e := store.kv_get(key)) else store.kv_index)

    on_a = Reader(node, watch.Key("app/a"), key_index("app/a"))
    on_missing = Reader(node, watch.Key("app/missing"), key_index("app/missing"))
    on_app = Reader(node, watch.Prefix("app/"), lambda: store.kv_index)
    on_other = Reader(node, watch.Prefix("other/"), lambda: store.kv_index)
    await parked(node, 4)
    for i in range(20):
        await put(node, f"unrelated/{i}")
    await asyncio.sleep(0.05)
    # not one of them looked at the store again: 20 writes cost the readers nothing
    assert [r.looks for r in (on_a, on_missing, on_app, on_other)] == [1, 1, 1, 1]
    await put(node, "app/a", b"new")
    await until(lambda: on_a.answered and on_app.answered, 5, "the readers of app/a")
    assert not on_missing.answered and not on_other.answered
    assert on_a.looks == on_app.looks == 2
    # a recursive delete answers the readers of keys under it and of listings over or under it
    await put(node, "other/x/1")
    await until(lambda: on_other.answered, 5, "the reader of other/")
    under = Reader(node, watch.Key("other/x/1"), key_index("other/x/1"))
    listing = Reader(node, watch.Prefix("other/x/"), lambda: store.kv_index)
    await parked(node, 3)
    await node.propose(commands.kv_delete("other/", None, True))
    await until(lambda: under.answered and listing.answered, 5, "readers under other/")
    assert not on_missing.answered
    on_missing.task.cancel()
    await parked(node, 0)


async def test_services_wake_the_readers_of_their_name_and_of_the_catalog(node: Node) -> None:
    store = node.store
    ttl = [{"id": "web1-ttl", "ttl": "30s"}]
    await register(node, "web1", "web", ttl)
    web = Reader(node, watch.Service("web"), lambda: store.catalog_index)
    db = Reader(node, watch.Service("db"), lambda: store.catalog_index)
    instances = Reader(node, watch.Table("services"), lambda: store.services_index)
    await parked(node, 3)
    await put(node, "k")  # KV writes: no catalog reader looks
    await node.propose(commands.check_update("web1-ttl", "passing", "ok"))
    await until(lambda: web.answered, 5, "the reader of web (one of its checks)")
    await asyncio.sleep(0.05)
    assert db.looks == 1 and not db.answered
    assert instances.looks == 1 and not instances.answered  # a check is not an instance
    await register(node, "db1", "db", [])
    await until(lambda: db.answered and instances.answered, 5, "db and instance readers")


async def test_many_readers_of_one_key_are_answered_in_slices_of_the_event_loop(
    node: Node,
) -> None:
    count = watch.WAKE_SLICE * 3 + 7
    store = node.store
    readers = [Reader(node, watch.Key("hot"), lambda: store.kv_index) for _ in range(count)]
    await parked(node, count)
    await put(node, "hot")
    # the loop turns between slices: right after the first turn only the first slice has run
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert 0 < sum(r.answered for r in readers) < count
    await until(lambda: all(r.answered for r in readers), 5, "every reader answered")
    assert node.watches.parked == 0


async def test_release_all_answers_every_reader_at_once_and_a_timeout_ends_a_wait(
    node: Node,
) -> None:
    store = node.store
    readers = [Reader(node, watch.Prefix(f"p{i}/"), lambda: store.kv_index) for i in range(5)]
    await parked(node, 5)
    node.watches.release_all()
    await until(lambda: all(r.answered for r in readers), 5, "every reader released")
    started = asyncio.get_running_loop().time()
    await node.watches.wait(watch.Key("never"), lambda: False, 0.1)
    assert asyncio.get_running_loop().time() - started >= 0.1
    assert node.watches.parked == 0 and not store.watching


async def test_a_restored_state_makes_every_reader_look_again(node: Node) -> None:
    # A snapshot (from the leader, or an online restore) replaces every table at once: no
    # topic can say what changed, so every parked reader checks its condition again.
    store = node.store
    await put(node, "k")
    readers = [Reader(node, watch.Key("k"), lambda: store.kv_index),
               Reader(node, watch.Service("web"), lambda: store.catalog_index)]
    await parked(node, 2)
    store.restore(store.snapshot())
    node.watches.notify()
    await until(lambda: all(r.looks == 2 for r in readers), 5, "every reader to look again")
    assert node.watches.parked == 2  # nothing moved: they wait on
    node.watches.release_all()
    await parked(node, 0)
