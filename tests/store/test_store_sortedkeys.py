"""SortedKeys against a sorted() model, with enough keys to split and drain sublists."""

from __future__ import annotations

import random

from konsul.store.sortedkeys import SortedKeys


def test_random_adds_and_removes_keep_order() -> None:
    rng = random.Random(7)
    keys = SortedKeys()
    model: set[str] = set()
    for step in range(30_000):
        key = f"{rng.randrange(6000):05}"
        # Bias towards growth first, then shrink to empty sublists and merge-free removals.
        grow = step < 18_000
        if key in model:
            if not grow or rng.random() < 0.3:
                keys.remove(key)
                model.discard(key)
        elif grow or rng.random() < 0.1:
            keys.add(key)
            model.add(key)
        if step % 3000 == 0:
            assert keys.to_list() == sorted(model)
    ordered = sorted(model)
    assert list(keys) == ordered and len(keys) == len(model)
    for start in ["", "0", "01", "02999", "05999", "1", f"{rng.randrange(6000):05}"]:
        assert list(keys.iter_from(start)) == [k for k in ordered if k >= start]


def test_bulk_load_then_edit() -> None:
    keys = SortedKeys(f"{i:05}" for i in range(0, 10_000, 2))
    keys.add("00001")
    keys.add("99999")
    keys.remove("00000")
    listed = keys.to_list()
    assert listed[:2] == ["00001", "00002"] and listed[-1] == "99999"
    assert len(keys) == 5001
    assert list(keys.iter_from("zzz")) == []
    keys.clear()
    assert len(keys) == 0 and list(keys.iter_from("")) == []
    keys.add("a")
    assert list(keys) == ["a"]
