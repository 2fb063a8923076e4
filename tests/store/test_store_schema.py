"""The command types: their wire form is the one logs already hold, and the docs follow them."""

from __future__ import annotations

from typing import Any, get_args

import msgpack
import pytest

from konsul.store import commands as c
from konsul.store import machine
from konsul.store.schema import Command, command_table, decode, encode

# Each builder's bytes beside the map earlier versions wrote for the same input, field order
# included: a log written before the command types existed must apply unchanged. KV values are
# bytes (msgpack bin) since values became bytes; the text form earlier logs hold is below.
CHECK = {"id": "service:web", "name": "Service 'web' check", "kind": "ttl", "target": "",
         "interval": None, "timeout": None, "ttl": 30.0, "dca": None}
SERVICE = {"id": "web", "name": "web", "address": "127.0.0.1", "port": 80, "tags": ["v1"],
           "meta": {"a": "b"}, "ttl": 60.0, "checks": [CHECK]}
INSTANCE = {"name": "web", "address": "127.0.0.1", "port": 80, "tags": ["v1"],
            "meta": {"a": "b"}, "ttl": "1m", "checks": [{"ttl": "30s"}]}
HASH = "ab" * 32
WIRE: list[tuple[bytes, dict[str, Any]]] = [
    (c.kv_set("k", "v", 3, 0), {"op": "kv_set", "key": "k", "value": b"v", "flags": 3, "cas": 0}),
    (c.kv_delete("k", 4), {"op": "kv_delete", "key": "k", "cas": 4, "recurse": False}),
    (c.kv_delete("", None, True), {"op": "kv_delete", "key": "", "cas": None, "recurse": True}),
    (
        c.txn([{"verb": "cas", "key": "a", "value": "1", "index": 0},
               {"verb": "get", "key": "b"}]),
        {"op": "txn", "ops": [["cas", "a", b"1", 0, 0], ["get", "b", None, 0, None]]},
    ),
    (c.service_register(INSTANCE), {"op": "service_register", "service": SERVICE}),
    (c.service_deregister("web"), {"op": "service_deregister", "id": "web"}),
    (c.service_heartbeat("web"), {"op": "service_heartbeat", "id": "web"}),
    (c.check_update("x", "passing", "ok"),
     {"op": "check_ttl", "id": "x", "status": "passing", "output": "ok"}),
    (c.check_update("x", "warning", "slow", from_runner=True),
     {"op": "check_set", "id": "x", "status": "warning", "output": "slow"}),
    (c.check_update("x", "critical", "down", from_runner=True, seen=6),
     {"op": "check_probe", "id": "x", "status": "critical", "output": "down", "seen": 6}),
    (c.service_expire("web", 7), {"op": "service_expire", "id": "web", "seen": 7}),
    (c.check_expire("x", 8), {"op": "check_expire", "id": "x", "seen": 8}),
    (c.check_reap("x", 9), {"op": "check_reap", "id": "x", "seen": 9}),
    (
        c.import_chunk({"kv": [{"key": "k", "value": "v"}], "services": [INSTANCE]}),
        {"op": "import", "kv": [["k", b"v", 0]], "services": [SERVICE]},
    ),
    (
        c.acl_policy_set("p1", "readers", "d", {"key_prefix": {"": "read"}}),
        {"op": "acl_policy_set", "id": "p1", "name": "readers", "description": "d",
         "rules": {"key_prefix": {"": "read"}}},
    ),
    (c.acl_policy_delete("p1"), {"op": "acl_policy_delete", "id": "p1"}),
    (
        c.acl_token_set("t1", HASH, "app", ["p1"]),
        {"op": "acl_token_set", "id": "t1", "hash": HASH, "description": "app",
         "policies": ["p1"]},
    ),
    (c.acl_token_delete("t1"), {"op": "acl_token_delete", "id": "t1"}),
    (
        c.acl_bootstrap("t0", HASH, "bootstrap", False),
        {"op": "acl_bootstrap", "id": "t0", "hash": HASH, "description": "bootstrap",
         "initial": False},
    ),
    (
        c.restore_begin("r1", 100, b"\x01" * 32, 7, 2),
        {"op": "restore_begin", "id": "r1", "size": 100, "sha256": b"\x01" * 32, "index": 7,
         "term": 2},
    ),
    (c.restore_chunk("r1", 0, b"\x00\xff"),
     {"op": "restore_chunk", "id": "r1", "offset": 0, "data": b"\x00\xff"}),
    (c.restore_commit("r1"), {"op": "restore_commit", "id": "r1"}),
    (c.restore_abort("r1", "gone"), {"op": "restore_abort", "id": "r1", "reason": "gone"}),
]


@pytest.mark.parametrize(("built", "expected"), WIRE, ids=[m["op"] for _, m in WIRE])
def test_builders_write_the_bytes_earlier_versions_wrote(built: bytes, expected: dict[str, Any]
                                                         ) -> None:
    assert built == msgpack.packb(expected)


# The same three commands as logs written before values were bytes hold them: values as text.
TEXT_VALUES: list[tuple[bytes, dict[str, Any]]] = [
    (c.kv_set("k", "v", 3, 0), {"op": "kv_set", "key": "k", "value": "v", "flags": 3, "cas": 0}),
    (
        c.txn([{"verb": "cas", "key": "a", "value": "1", "index": 0},
               {"verb": "get", "key": "b"}]),
        {"op": "txn", "ops": [["cas", "a", "1", 0, 0], ["get", "b", None, 0, None]]},
    ),
    (
        c.import_chunk({"kv": [{"key": "k", "value": "v"}], "services": [INSTANCE]}),
        {"op": "import", "kv": [["k", "v", 0]], "services": [SERVICE]},
    ),
]


@pytest.mark.parametrize(("built", "old"), TEXT_VALUES, ids=[m["op"] for _, m in TEXT_VALUES])
def test_entries_with_text_values_decode_to_the_same_commands(built: bytes, old: dict[str, Any]
                                                              ) -> None:
    assert decode(msgpack.packb(old)) == decode(built)


@pytest.mark.parametrize(("built", "expected"), WIRE, ids=[m["op"] for _, m in WIRE])
def test_every_command_decodes_to_its_type_and_encodes_back(built: bytes, expected: dict[str, Any]
                                                            ) -> None:
    command = decode(built)
    assert expected["op"] == command.OP
    assert encode(command) == built


def test_every_command_type_has_a_wire_sample() -> None:
    assert {cls.OP for cls in get_args(Command)} == {m["op"] for _, m in WIRE}


def test_the_state_machine_docstring_shows_the_table_of_the_types() -> None:
    table = command_table()
    assert machine.__doc__ is not None
    assert table in machine.__doc__, f"paste into konsul/store/machine.py:\n{table}"


def test_an_unknown_op_or_a_missing_field_does_not_decode() -> None:
    with pytest.raises(KeyError):
        decode(msgpack.packb({"op": "nope"}))
    with pytest.raises(KeyError):
        decode(msgpack.packb({"op": "kv_set", "key": "a"}))
