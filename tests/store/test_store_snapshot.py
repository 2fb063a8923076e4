"""Snapshot/restore and export/import round trips."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from konsul.store import Event, Imported, Reason, Rejected, StateMachine
from konsul.store import commands as c
from tests.store.snapshot_view import as_map


def populated() -> StateMachine:
    sm = StateMachine()
    cmds = [
        c.kv_set("app/config", '{"debug": true}', flags=42),
        c.kv_set("app/feature/x", "on"),
        c.kv_set("ünïcode/ключ", "значение"),
        c.kv_set("app/feature/x", "off"),
        c.kv_delete("app/feature/x"),
        c.kv_set("empty", ""),
        c.txn([{"verb": "set", "key": "t/1", "value": "a"},
               {"verb": "set", "key": "t/2", "value": "b"}]),
        c.service_register({"name": "web", "id": "web-1", "address": "10.0.0.1", "port": 80,
                            "tags": ["prod", "eu"], "meta": {"version": "1.2", "az": "b"},
                            "checks": [{"http": "http://10.0.0.1/health", "interval": "2s",
                                        "timeout": "1500ms",
                                        "deregister_critical_after": "90s"},
                                       {"ttl": "30s", "name": "app heartbeat"}]}, ttl="1m"),
        c.service_register({"name": "web", "id": "web-2", "port": 81}),
        c.service_register({"name": "db", "checks": [{"id": "db-tcp", "tcp": "db:5432"}]}),
        c.check_update("service:web-1:2", "warning", "slow"),
        c.check_update("db-tcp", "passing", "connected", from_runner=True),
        c.service_heartbeat("web-1"),
    ]
    for i, data in enumerate(cmds, start=1):
        result = sm.apply(i, data)
        assert not isinstance(result, Rejected), result
    return sm


def state(sm: StateMachine) -> dict[str, Any]:
    """Everything observable through the read API."""
    return {
        "last_applied": sm.last_applied,
        "indices": (sm.kv_index, sm.services_index, sm.checks_index),
        "kv": [e.to_json() for e in sm.kv_list()],
        "services": [sm.service_json(s) for s in sm.services()],
        "heartbeats": [s.heartbeat_index for s in sm.services()],
        "checks": [(ch.to_json(), ch.status_index, ch.update_index) for ch in sm.checks()],
    }


def test_restore_of_a_snapshot_is_identical() -> None:
    sm = populated()
    data = sm.snapshot()
    copy = StateMachine()
    copy.apply(1, c.kv_set("stale", "state to be replaced"))
    copy.restore(data)
    assert state(copy) == state(sm)
    assert copy.snapshot() == data
    assert copy.kv_get("stale") is None
    # And both evolve identically afterwards.
    for m in (sm, copy):
        m.apply(100, c.kv_set("app/new", "1"))
        m.apply(101, c.service_deregister("web-1"))
    assert copy.snapshot() == sm.snapshot()


def test_snapshot_bytes_do_not_depend_on_table_order() -> None:
    a = populated()
    raw = as_map(a.snapshot())
    assert list(raw["kv"]) == sorted(raw["kv"])
    # The same state, handed over in reverse order, restores to the same bytes.
    raw["kv"] = dict(reversed(raw["kv"].items()))
    raw["services"].reverse()
    raw["checks"].reverse()
    b = StateMachine()
    b.restore(msgpack.packb(raw))
    assert b.snapshot() == a.snapshot()
    assert state(b) == state(a)


def test_a_deferred_snapshot_is_the_state_at_capture_time() -> None:
    sm = populated()
    expected = sm.snapshot()
    pieces = sm.snapshot_chunks()
    sm.apply(20, c.kv_set("app/config", "changed after capture"))
    sm.apply(21, c.kv_set("zzz", "new"))
    sm.apply(22, c.kv_delete("t/", recurse=True))
    sm.apply(23, c.service_deregister("web-1"))
    sm.apply(24, c.check_update("db-tcp", "critical", "down", from_runner=True))
    assert b"".join(pieces) == expected


def test_empty_state_round_trips() -> None:
    sm = StateMachine()
    copy = StateMachine()
    copy.restore(sm.snapshot())
    assert state(copy) == state(sm)


@pytest.mark.parametrize("data", [b"", b"garbage", c.encode({"format": 99}),
                                  c.encode({"format": 1, "kv": {}})])
def test_restore_refuses_what_is_not_a_snapshot_and_keeps_state(data: bytes) -> None:
    sm = populated()
    before = sm.snapshot()
    with pytest.raises(ValueError):
        sm.restore(data)
    assert sm.snapshot() == before


def test_restore_tells_listeners_to_rescan() -> None:
    sm = populated()
    other = StateMachine()
    seen: list[Event] = []
    other.listeners.append(seen.append)
    other.restore(sm.snapshot())
    assert seen == [Event("restored", sm.last_applied)]


def test_export_holds_only_portable_fields() -> None:
    doc = populated().export()
    assert doc["version"] == 1 and doc["index"] == 13
    assert doc["kv"] == [
        {"key": "app/config", "value": '{"debug": true}', "flags": 42},
        {"key": "empty", "value": "", "flags": 0},
        {"key": "t/1", "value": "a", "flags": 0},
        {"key": "t/2", "value": "b", "flags": 0},
        {"key": "ünïcode/ключ", "value": "значение", "flags": 0},
    ]
    assert [s["id"] for s in doc["services"]] == ["db", "web-1", "web-2"]
    web1 = doc["services"][1]
    assert web1 == {
        "id": "web-1", "name": "web", "address": "10.0.0.1", "port": 80, "tags": ["prod", "eu"],
        "meta": {"az": "b", "version": "1.2"}, "ttl": "1m",
        "checks": [{"id": "service:web-1:1", "name": "Service 'web' check",
                    "http": "http://10.0.0.1/health", "interval": "2s", "timeout": "1500ms",
                    "deregister_critical_after": "90s"},
                   {"id": "service:web-1:2", "name": "app heartbeat", "ttl": "30s"}],
    }


def import_into(sm: StateMachine, doc: Any, start: int) -> int:
    index = start
    for chunk in c.import_document(doc):
        result = sm.apply(index, chunk)
        assert isinstance(result, Imported), result
        index += 1
    return index


def test_export_import_export_is_identical_but_for_the_index() -> None:
    first = populated().export()
    fresh = StateMachine()
    import_into(fresh, first, 1)
    second = fresh.export()
    assert second["index"] != first["index"]
    assert {**second, "index": 0} == {**first, "index": 0}


def test_large_import_uses_several_chunks_and_round_trips() -> None:
    doc = {"version": 1,
           "kv": [{"key": f"k/{i:05}", "value": str(i), "flags": i} for i in range(1234)],
           "services": [{"name": f"svc{i % 7}", "id": f"id{i}",
                         "checks": [{"ttl": "10s"}]} for i in range(600)]}
    fresh = StateMachine()
    end = import_into(fresh, doc, 1)
    assert end - 1 == len(c.import_document(doc)) >= 4
    exported = fresh.export()
    assert exported["kv"] == doc["kv"]
    assert len(exported["services"]) == 600 and fresh.check_count == 600
    again = StateMachine()
    import_into(again, exported, 1)
    assert {**again.export(), "index": 0} == {**exported, "index": 0}


def test_import_upserts_into_existing_state() -> None:
    sm = populated()
    result = sm.apply(50, c.import_document({"kv": [{"key": "app/config", "value": "new"}],
                                             "services": [{"name": "web", "id": "web-2",
                                                           "port": 99}]})[0])
    assert result == Imported(1, 1)
    entry = sm.kv_get("app/config")
    assert entry is not None and (entry.value, entry.flags, entry.create_index,
                                  entry.modify_index) == (b"new", 0, 1, 50)
    assert sm.service("web-2").port == 99  # type: ignore[union-attr]
    assert sm.kv_get("empty") is not None  # nothing else removed


def test_an_import_chunk_is_atomic() -> None:
    sm = populated()
    before = sm.snapshot()
    # db-tcp belongs to service "db", which this chunk does not re-register.
    chunk = c.import_chunk({"kv": [{"key": "new", "value": "x"}],
                            "services": [{"name": "other",
                                          "checks": [{"id": "db-tcp", "ttl": "1s"}]}]})
    result = sm.apply(60, chunk)
    assert isinstance(result, Rejected) and result.reason is Reason.CONFLICT
    after = StateMachine()
    after.restore(before)
    assert sm.kv_get("new") is None
    assert state(sm)["kv"] == state(after)["kv"]
    assert sm.service("other") is None


@pytest.mark.parametrize("forged", [
    {"op": "import", "kv": [["a", "1", 0], ["b", 2, 0]], "services": []},
    {"op": "import", "kv": [["a", "1", 0]], "services": [{"id": "x"}]},
    {"op": "import", "kv": [["a", "1", 0]], "services": [{
        "id": "x", "name": "x", "address": "", "port": 0, "tags": [], "meta": {}, "ttl": None,
        "checks": [{"id": "c"}]}]},
])
def test_a_forged_import_fails_without_a_trace(forged: dict[str, Any]) -> None:
    sm = populated()
    before = state(sm)
    result = sm.apply(70, c.encode(forged))
    assert isinstance(result, Rejected) and result.reason is Reason.MALFORMED
    assert {**state(sm), "last_applied": 0} == {**before, "last_applied": 0}


def test_import_may_move_a_check_between_services_it_reregisters() -> None:
    sm = StateMachine()
    sm.apply(1, c.service_register({"name": "a", "checks": [{"id": "c", "ttl": "1s"}]}))
    doc = {"services": [{"name": "b", "checks": [{"id": "c", "ttl": "1s"}]}, {"name": "a"}]}
    import_into(sm, doc, 2)
    assert sm.check("c").service_id == "b"  # type: ignore[union-attr]
    assert sm.service_checks("a") == [] and [ch.id for ch in sm.service_checks("b")] == ["c"]


BINARY = b"\x00\xff\x80binary\xfe"


def test_values_are_bytes_through_snapshots_and_export_import() -> None:
    sm = StateMachine()
    sm.apply(1, c.kv_set("bin", BINARY, flags=3))
    sm.apply(2, c.kv_set("text", "é"))
    restored = StateMachine()
    restored.restore(sm.snapshot())
    assert restored.kv_get("bin").value == BINARY  # type: ignore[union-attr]
    assert restored.snapshot() == sm.snapshot()
    document = sm.export()
    assert document["kv"] == [
        {"key": "bin", "value": None, "value_base64": "AP+AYmluYXJ5/g==", "flags": 3},
        {"key": "text", "value": "é", "flags": 0},
    ]
    imported = StateMachine()
    for i, chunk in enumerate(c.import_document(document), start=1):
        imported.apply(i, chunk)
    assert [(e.key, e.value, e.flags) for e in imported.kv_list()] == [
        ("bin", BINARY, 3), ("text", "é".encode(), 0)]


def test_a_snapshot_from_before_values_were_bytes_restores_them_as_their_utf8() -> None:
    sm = populated()
    current = as_map(sm.snapshot(), use_list=False)
    old = dict(current, format=1,
               kv={k: (v.decode(), *rest) for k, (v, *rest) in current["kv"].items()})
    restored = StateMachine()
    restored.restore(msgpack.packb(old))
    assert restored.kv_list() == sm.kv_list()
    assert restored.snapshot() == sm.snapshot()  # written again in the current format
