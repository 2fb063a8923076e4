"""Snapshots as streams (format 3), and the online restore that arrives through the log."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from konsul.store import Reason, Rejected, StateMachine, snapshot
from konsul.store import commands as c
from konsul.store.types import Ignored, Restored, Restoring
from tests.store.snapshot_view import as_map
from tests.store.test_store_snapshot import populated, state


def big(keys: int, value_bytes: int = 10) -> StateMachine:
    sm = StateMachine()
    sm.apply(1, c.import_document({"kv": [{"key": f"k/{i:06}", "value": "v" * value_bytes}
                                          for i in range(keys)]})[0])
    return sm


def test_pieces_are_blocks_of_bounded_size_and_restore_from_any_cut() -> None:
    sm = big(20_000)
    pieces = list(sm.snapshot_chunks())
    assert len(pieces) > 3  # head, several KV blocks, the end of the table, the rest
    assert max(map(len, pieces)) <= snapshot.BLOCK_BYTES + 64 * 1024
    data = b"".join(pieces)
    for cut in (1, 7, 4096, 1 << 20):
        copy = StateMachine()
        copy.restore_stream(data[i:i + cut] for i in range(0, len(data), cut))
        assert copy.snapshot() == data


def test_a_small_snapshot_restores_fed_one_byte_at_a_time() -> None:
    sm = populated()
    data = sm.snapshot()
    copy = StateMachine()
    copy.restore_stream(data[i:i + 1] for i in range(len(data)))
    assert state(copy) == state(sm)


def test_a_format_2_snapshot_still_loads() -> None:
    sm = populated()
    old = msgpack.packb(as_map(sm.snapshot()))
    copy = StateMachine()
    copy.restore(old)
    assert state(copy) == state(sm)
    assert copy.snapshot() == sm.snapshot()


@pytest.mark.parametrize("cut", [1, 30, -1])
def test_a_truncated_snapshot_is_refused_and_changes_nothing(cut: int) -> None:
    sm = populated()
    data = big(5000).snapshot()
    before = sm.snapshot()
    with pytest.raises(ValueError, match=r"truncated|not a store snapshot"):
        sm.restore(data[:cut])
    assert sm.snapshot() == before


def test_trailing_data_is_refused() -> None:
    with pytest.raises(snapshot.SnapshotError, match="after the end"):
        snapshot.load([populated().snapshot() + msgpack.packb(1)])


def test_a_checking_load_keeps_nothing_but_counts() -> None:
    sm = populated()
    loader = snapshot.Loader(keep=False)
    loader.feed(sm.snapshot())
    tables = loader.finish()
    assert (loader.kv_count, loader.service_count, loader.check_count) == (5, 3, 3)
    assert len(tables.kv) == 0 and not tables.catalog.services


def test_a_strict_load_refuses_a_row_of_the_wrong_shape() -> None:
    head = {"format": 3, "last_applied": 1, "kv_index": 1, "services_index": 0,
            "checks_index": 0}
    bad = b"".join(msgpack.packb(o) for o in (head, {"k": [5, 0, 1, 1]}, None, [], [], None))
    snapshot.load([bad])  # trusted (a node's own checksummed snapshot): not looked at
    with pytest.raises(snapshot.SnapshotError, match="wrong type"):
        snapshot.load([bad], strict=True)


# ----------------------------------------------------------------------------- online restore


def entries(data: bytes, restore_id: str = "r1", chunk: int = 1000) -> list[bytes]:
    """The log entries of an online restore of ``data``."""
    out = [c.restore_begin(restore_id, len(data), hashlib.sha256(data).digest(), 77, 3)]
    out += [c.restore_chunk(restore_id, i, data[i:i + chunk]) for i in range(0, len(data), chunk)]
    return [*out, c.restore_commit(restore_id)]


def apply_all(sm: StateMachine, datas: list[bytes], start: int) -> list[object]:
    return [sm.apply(i, d) for i, d in enumerate(datas, start)]


def test_an_online_restore_replaces_the_state_at_its_commit() -> None:
    source = populated()
    target = StateMachine()
    target.apply(1, c.kv_set("gone", "after the restore"))
    results = apply_all(target, entries(source.snapshot()), 10)
    assert all(isinstance(r, Restoring) for r in results[:-1])
    done = results[-1]
    assert isinstance(done, Restored) and done.index == 10 and done.kv == 5
    assert target.kv_get("gone") is None
    assert target.last_applied == 10 + len(results) - 1
    # Every row is new at the index where the restore began; the values are the source's.
    assert [(e.key, e.value, e.create_index, e.modify_index) for e in target.kv_list()] == [
        (e.key, e.value, 10, 10) for e in source.kv_list()]
    assert {s.id: s.modify_index for s in target.services()} == {"db": 10, "web-1": 10,
                                                                   "web-2": 10}
    assert target.kv_index == target.services_index == target.checks_index == 10
    # Writes after it apply on top of it.
    target.apply(100, c.kv_set("after", "x"))
    assert target.kv_get("after").modify_index == 100  # type: ignore[union-attr]


def test_writes_are_refused_while_a_restore_is_open_and_accepted_after() -> None:
    data = populated().snapshot()
    sm = StateMachine()
    log = entries(data)
    apply_all(sm, log[:2], 1)
    refused = sm.apply(3, c.kv_set("x", "y"))
    assert isinstance(refused, Rejected) and refused.reason is Reason.BUSY
    assert sm.restore_pending
    with pytest.raises(RuntimeError):
        sm.snapshot()
    apply_all(sm, log[2:], 4)
    assert not sm.restore_pending
    assert sm.apply(100, c.kv_set("x", "y")).modify_index == 100  # type: ignore[union-attr]


def test_an_aborted_restore_changes_nothing() -> None:
    sm = populated()
    before = state(sm)
    log = entries(big(3000).snapshot())
    apply_all(sm, log[:3], 20)
    assert isinstance(sm.apply(23, c.restore_abort("r1", "test")), Ignored)
    assert not sm.restore_pending
    assert {**state(sm), "last_applied": 0} == {**before, "last_applied": 0}
    late = sm.apply(24, log[3])
    assert isinstance(late, Rejected) and late.reason is Reason.CONFLICT


def test_a_checksum_mismatch_drops_the_restore_at_commit() -> None:
    data = populated().snapshot()
    log = entries(data)
    log[0] = c.restore_begin("r1", len(data), b"\x00" * 32, 1, 1)
    sm = populated()
    before = sm.snapshot()
    result = apply_all(sm, log, 20)[-1]
    assert isinstance(result, Rejected) and result.reason is Reason.INVALID
    assert "SHA-256" in result.message and not sm.restore_pending
    sm.advance(0)
    assert as_map(sm.snapshot())["kv"] == as_map(before)["kv"]


def test_a_chunk_that_does_not_parse_or_fit_drops_the_restore() -> None:
    sm = StateMachine()
    junk = b"not a snapshot at all"
    log = [c.restore_begin("r1", len(junk), hashlib.sha256(junk).digest(), 1, 1),
           c.restore_chunk("r1", 0, junk)]
    bad = apply_all(sm, log, 1)[-1]
    assert isinstance(bad, Rejected) and bad.reason is Reason.INVALID
    assert not sm.restore_pending
    gap = [c.restore_begin("r2", 10, b"\x00" * 32, 1, 1), c.restore_chunk("r2", 5, b"x")]
    out_of_order = apply_all(sm, gap, 3)[-1]
    assert isinstance(out_of_order, Rejected) and "expected 0" in out_of_order.message


def test_an_incomplete_restore_does_not_commit() -> None:
    data = big(3000).snapshot()
    log = entries(data)
    sm = StateMachine()
    result = apply_all(sm, [*log[:2], log[-1]], 1)[-1]
    assert isinstance(result, Rejected) and "arrived" in result.message


def test_replicas_replaying_the_same_restore_end_identical() -> None:
    log = [c.kv_set("before", "1"), *entries(big(2500, 50).snapshot(), chunk=777),
           c.kv_set("after", "2")]
    a, b = StateMachine(), StateMachine()
    apply_all(a, log, 1)
    apply_all(b, log, 1)
    assert a.snapshot() == b.snapshot()
    assert a.kv_get("before") is None and a.kv_get("after") is not None
