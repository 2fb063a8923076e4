"""KV semantics through StateMachine.apply: CAS, deletes, listings, transactions, indices."""

from __future__ import annotations

import pytest

from konsul.api.errors import error_body
from konsul.store import (
    Ignored,
    KVDeleted,
    KVEntry,
    KVWritten,
    Reason,
    Rejected,
    StateMachine,
    TxnDone,
)
from konsul.store import commands as c
from konsul.store.commands import encode


class Log:
    """Applies commands at consecutive indices, as Raft would."""

    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0

    def __call__(self, data: bytes) -> object:
        self.index += 1
        return self.sm.apply(self.index, data)


@pytest.fixture
def log() -> Log:
    return Log()


def test_set_creates_then_updates_keeping_create_index(log: Log) -> None:
    assert log(c.kv_set("a", "1")) == KVWritten("a", 1, 1)
    assert log(c.kv_set("b", "x")) == KVWritten("b", 2, 2)
    assert log(c.kv_set("a", "2", flags=7)) == KVWritten("a", 1, 3)
    assert log.sm.kv_get("a") == KVEntry("a", b"2", 7, 1, 3)
    assert log.sm.kv_get("a").to_json() == {  # type: ignore[union-attr]
        "key": "a", "value": "2", "flags": 7, "create_index": 1, "modify_index": 3}
    assert log.sm.kv_get("missing") is None
    assert log.sm.kv_index == 3 and log.sm.last_applied == 3 and log.sm.kv_count == 2


def test_cas_zero_creates_only(log: Log) -> None:
    assert log(c.kv_set("a", "1", cas=0)) == KVWritten("a", 1, 1)
    result = log(c.kv_set("a", "2", cas=0))
    assert isinstance(result, Rejected) and result.reason is Reason.CONFLICT
    assert result.details == {"key": "a", "current_index": 1}
    assert "already exists" in result.message
    assert error_body(result.to_error())["error"] == "conflict"
    assert log.sm.kv_get("a") == KVEntry("a", b"1", 0, 1, 1)
    assert log.sm.kv_index == 1  # a failed CAS changes nothing, not even the table index
    assert log.sm.last_applied == 2


def test_cas_on_modify_index(log: Log) -> None:
    log(c.kv_set("a", "1"))
    log(c.kv_set("a", "2"))
    stale = log(c.kv_set("a", "3", cas=1))
    assert isinstance(stale, Rejected) and stale.details["current_index"] == 2
    assert log(c.kv_set("a", "3", cas=2)) == KVWritten("a", 1, 4)
    missing = log(c.kv_set("nope", "x", cas=4))
    assert isinstance(missing, Rejected) and "does not exist" in missing.message


def test_delete_single_and_cas(log: Log) -> None:
    log(c.kv_set("a", "1"))
    log(c.kv_set("b", "1"))
    assert log(c.kv_delete("missing")) == KVDeleted(0)
    assert log.sm.kv_index == 2  # deleting nothing changes nothing
    wrong = log(c.kv_delete("a", cas=5))
    assert isinstance(wrong, Rejected) and wrong.reason is Reason.CONFLICT
    assert log.sm.kv_get("a") is not None
    assert log(c.kv_delete("a", cas=1)) == KVDeleted(1)
    assert log.sm.kv_get("a") is None and log.sm.kv_index == 5
    assert log(c.kv_delete("a", cas=1)) == KVDeleted(0)  # absent: nothing to protect
    assert log(c.kv_delete("b")) == KVDeleted(1)
    assert log.sm.kv_count == 0


def test_recursive_delete_counts_and_stays_inside_the_prefix(log: Log) -> None:
    for key in ["app/a", "app/b/c", "app/b/d", "app", "apple", "other/x"]:
        log(c.kv_set(key, "v"))
    assert log(c.kv_delete("app/", recurse=True)) == KVDeleted(3)
    assert log.sm.kv_keys() == ["app", "apple", "other/x"]
    assert log.sm.kv_index == 7
    assert log(c.kv_delete("nothing/", recurse=True)) == KVDeleted(0)
    assert log.sm.kv_index == 7
    assert log(c.kv_delete("app", recurse=True)) == KVDeleted(2)  # plain prefix, not a folder
    assert log(c.kv_delete("", recurse=True)) == KVDeleted(1)
    assert log.sm.kv_count == 0 and log.sm.kv_keys() == []
    log(c.kv_set("z", "after clearing"))
    assert log.sm.kv_keys() == ["z"]


def test_listing_sorted_with_and_without_separator(log: Log) -> None:
    keys = ["web/config", "web/", "web/b/x", "web/b/y", "web/a/1", "web/c", "webby", "w", "web/b/"]
    for key in keys:
        log(c.kv_set(key, key.upper()))
    sm = log.sm
    assert sm.kv_keys() == sorted(keys)
    assert sm.kv_keys("web/") == sorted(k for k in keys if k.startswith("web/"))
    assert [e.key for e in sm.kv_list("web/")] == sm.kv_keys("web/")
    assert sm.kv_list("web/c")[0] == KVEntry("web/c", b"WEB/C", 0, 6, 6)
    # Folder names roll up everything beneath; a key equal to a folder name appears once.
    assert sm.kv_keys("web/", "/") == ["web/", "web/a/", "web/b/", "web/c", "web/config"]
    assert [e.key for e in sm.kv_list("web/", "/")] == ["web/", "web/b/", "web/c", "web/config"]
    assert sm.kv_keys("", "/") == ["w", "web/", "webby"]
    assert sm.kv_keys("web/b/", "/") == ["web/b/", "web/b/x", "web/b/y"]
    assert sm.kv_keys("zzz") == [] and sm.kv_list("zzz", "/") == []
    # A multi-character separator works too.
    log(c.kv_set("x::a::b", "1"))
    log(c.kv_set("x::c", "1"))
    assert sm.kv_keys("x::", "::") == ["x::a::", "x::c"]
    # A separator ending in the largest code point cannot be "incremented past": still right.
    top = chr(0x10FFFF)
    for key in (f"m/a{top}1", f"m/a{top}2", f"m/b{top}", "m/c"):
        log(c.kv_set(key, ""))
    assert sm.kv_keys("m/", top) == [f"m/a{top}", f"m/b{top}", "m/c"]


def test_listing_across_many_sublists() -> None:
    log = Log()
    keys = [f"k/{i % 37:02}/{i:05}" for i in range(5000)]
    for key in keys:
        log(c.kv_set(key, "v"))
    for key in keys[::3]:
        log(c.kv_delete(key))
    alive = sorted(set(keys) - set(keys[::3]))
    assert log.sm.kv_keys("k/") == alive
    assert log.sm.kv_keys("k/", "/") == [f"k/{i:02}/" for i in range(37)]
    assert log.sm.kv_keys("k/05/") == [k for k in alive if k.startswith("k/05/")]


def test_txn_success_applies_everything_at_one_index(log: Log) -> None:
    log(c.kv_set("a", "1"))  # 1
    log(c.kv_set("gone", "1"))  # 2
    result = log(c.txn([
        {"verb": "cas", "key": "a", "value": "2", "index": 1},
        {"verb": "set", "key": "b", "value": "new", "flags": 9},
        {"verb": "get", "key": "b"},
        {"verb": "check-index", "key": "a", "index": 3},
        {"verb": "delete", "key": "gone"},
        {"verb": "delete-cas", "key": "never", "index": 5},
        {"verb": "cas", "key": "c", "value": "created", "index": 0},
        {"verb": "check-index", "key": "gone", "index": 0},
    ]))
    assert result == TxnDone(3, [
        {"key": "a", "create_index": 1, "modify_index": 3},
        {"key": "b", "create_index": 3, "modify_index": 3},
        {"key": "b", "value": "new", "flags": 9, "create_index": 3, "modify_index": 3},
        {"key": "a", "modify_index": 3},
        {"key": "gone", "deleted": 1},
        {"key": "never", "deleted": 0},
        {"key": "c", "create_index": 3, "modify_index": 3},
        {"key": "gone", "modify_index": 0},
    ])
    assert log.sm.kv_keys() == ["a", "b", "c"]
    assert log.sm.kv_index == 3


def test_txn_failure_changes_nothing_and_reports_every_failing_op(log: Log) -> None:
    log(c.kv_set("a", "1"))
    log(c.kv_set("b", "1"))
    before = log.sm.snapshot()
    result = log(c.txn([
        {"verb": "set", "key": "a", "value": "changed"},
        {"verb": "delete", "key": "b"},
        {"verb": "set", "key": "new", "value": "x"},
        {"verb": "cas", "key": "a", "value": "y", "index": 1},  # a was just set: index is 3
        {"verb": "get", "key": "missing"},
        {"verb": "delete-cas", "key": "new", "index": 99},
        {"verb": "check-index", "key": "b", "index": 2},  # deleted above: now 0
    ]))
    assert isinstance(result, Rejected) and result.reason is Reason.CONFLICT
    errors = result.details["errors"]
    assert [e["op_index"] for e in errors] == [3, 4, 5, 6]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert error_body(result.to_error())["errors"] == errors
    # Only last_applied moved.
    after = StateMachine()
    after.restore(before)
    assert log.sm.kv_list() == after.kv_list() and log.sm.kv_index == 2
    assert log.sm.last_applied == 3


def test_read_only_txn_leaves_the_index_alone(log: Log) -> None:
    log(c.kv_set("a", "1"))
    assert isinstance(log(c.txn([{"verb": "get", "key": "a"}])), TxnDone)
    assert log.sm.kv_index == 1
    # Set then delete of a key that did not exist is a no-op too.
    log(c.txn([{"verb": "set", "key": "t", "value": "1"}, {"verb": "delete", "key": "t"}]))
    assert log.sm.kv_index == 1 and log.sm.kv_get("t") is None


def test_txn_can_delete_then_recreate_a_key(log: Log) -> None:
    log(c.kv_set("a", "1"))
    result = log(c.txn([{"verb": "delete", "key": "a"},
                        {"verb": "cas", "key": "a", "value": "2", "index": 0}]))
    assert isinstance(result, TxnDone)
    assert log.sm.kv_get("a") == KVEntry("a", b"2", 0, 2, 2)  # a new key: new create_index


def test_apply_never_raises_on_garbage() -> None:
    sm = StateMachine()
    garbage = [b"", b"\xc1", b"\x93\x01\x02\x03", encode({"op": "nope"}), encode({"no": "op"}),
               encode({"op": "kv_set", "key": "a"}), encode({"op": "txn", "ops": 5})]
    for i, data in enumerate(garbage, start=1):
        result = sm.apply(i, data)
        assert isinstance(result, Rejected) and result.reason is Reason.MALFORMED
    assert sm.apply_errors == len(garbage)
    assert sm.kv_count == 0 and sm.last_applied == len(garbage)
    assert sm.apply(len(garbage) + 1, c.kv_set("a", "b")) == KVWritten("a", 8, 8)


def test_an_index_is_applied_once() -> None:
    sm = StateMachine()
    sm.apply(5, c.kv_set("a", "1"))
    assert isinstance(sm.apply(5, c.kv_set("a", "2")), Ignored)
    assert isinstance(sm.apply(4, c.kv_set("a", "3")), Ignored)
    assert sm.kv_get("a").value == b"1"  # type: ignore[union-attr]
    sm.advance(9)  # a no-op entry
    assert sm.last_applied == 9
    sm.advance(3)
    assert sm.last_applied == 9
