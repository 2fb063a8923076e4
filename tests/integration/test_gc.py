"""The node's garbage-collector settings (konsul/__main__.py, settle_gc): what start-up built
is frozen and the young generation waits for real growth, not for the requests in flight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from konsul.__main__ import GC_THRESHOLDS, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_settle_gc_freezes_what_exists_and_raises_the_young_threshold(restored_gc: None) -> None:
    kept = [[i] for i in range(1000)]  # stands for the store a node recovered at start-up
    settle_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > len(kept)
    collectable = {id(o) for o in gc.get_objects()}  # the frozen are in no generation
    assert not any(id(o) in collectable for o in kept)


def test_requests_in_flight_alone_do_not_start_a_young_collection(restored_gc: None) -> None:
    settle_gc()
    young: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            young.append(1)

    gc.callbacks.append(count)
    try:
        # 64 requests in flight, each holding a few dozen containers, made and dropped 50 times:
        # under the default threshold (700) this is dozens of young collections.
        for _ in range(50):
            in_flight = [[{"k": i}, [i], (i, [i])] for i in range(64 * 10)]
            del in_flight
    finally:
        gc.callbacks.remove(count)
    assert young == []
