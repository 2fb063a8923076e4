"""Command builders: what they accept, what they refuse (with which error class and message)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from konsul.api.errors import answer_for
from konsul.errors import BadRequest, TooLarge
from konsul.store import commands as c


def decode(data: bytes) -> dict[str, Any]:
    cmd: dict[str, Any] = msgpack.unpackb(data)
    return cmd


# ----------------------------------------------------------------------------- keys and values


@pytest.mark.parametrize(
    "key",
    ["a", "a/b/c", "x" * 512, "é" * 256, "folder/", "a..b", "a/..b/c", "with space", "日本/語"],
)
def test_valid_keys_are_accepted_unchanged(key: str) -> None:
    assert decode(c.kv_set(key, "v"))["key"] == key


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "must not be empty"),
        ("/abs", "must not start with '/'"),
        ("..", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("a/..", "'..' segment"),
        ("a\nb", "control characters"),
        ("a\x00", "control characters"),
        ("a\x7f", "control characters"),
        ("a\x85", "control characters"),
        ("x" * 513, "513 bytes"),
        ("é" * 257, "514 bytes"),
        ("bad\udc80", "not valid UTF-8"),
    ],
)
def test_invalid_keys_are_refused_with_a_reason(key: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        c.kv_set(key, "v")
    assert fragment in info.value.message
    assert answer_for(info.value).status == 400


@pytest.mark.parametrize("key", [None, 1, b"bytes", ["a"]])
def test_non_string_keys_are_refused(key: Any) -> None:
    with pytest.raises(BadRequest, match="must be a string"):
        c.kv_set(key, "v")


def test_value_limit_is_512_kib_in_utf8_bytes() -> None:
    assert decode(c.kv_set("k", "x" * c.MAX_VALUE_BYTES))["value"] == b"x" * c.MAX_VALUE_BYTES
    with pytest.raises(TooLarge) as info:
        c.kv_set("k", "x" * (c.MAX_VALUE_BYTES + 1))
    assert answer_for(info.value).status == 413
    # 2-byte characters: half as many fit.
    c.kv_set("k", "é" * (c.MAX_VALUE_BYTES // 2))
    with pytest.raises(TooLarge):
        c.kv_set("k", "é" * (c.MAX_VALUE_BYTES // 2 + 1))


@pytest.mark.parametrize("value", [None, 5, bytearray(b"raw"), {"a": 1}, "bad\ud800"])
def test_values_must_be_bytes_or_utf8_text(value: Any) -> None:
    with pytest.raises(BadRequest):
        c.kv_set("k", value)


def test_values_are_bytes_and_text_is_kept_as_its_utf8() -> None:
    assert decode(c.kv_set("k", b"\x00\xff\xfe"))["value"] == b"\x00\xff\xfe"
    assert decode(c.kv_set("k", "é"))["value"] == "é".encode()
    with pytest.raises(TooLarge):
        c.kv_set("k", bytes(c.MAX_VALUE_BYTES + 1))


@pytest.mark.parametrize(("fields", "value"), [
    ({"value": "text"}, b"text"),
    ({"value_base64": "AP8="}, b"\x00\xff"),
    ({"value": None, "value_base64": "AP8="}, b"\x00\xff"),  # as a binary value reads back
])
def test_json_values_are_text_or_base64(fields: dict[str, Any], value: bytes) -> None:
    assert c.value_from_json(fields) == value


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"value": "a", "value_base64": "AP8="}, "not both"),
    ({"value_base64": "not base64!"}, "not valid base64"),
    ({"value_base64": 5}, "base64 string"),
])
def test_json_values_refused(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        c.value_from_json(fields)


def test_empty_value_is_a_value() -> None:
    assert decode(c.kv_set("k", ""))["value"] == b""


def test_flags_are_uint64() -> None:
    assert decode(c.kv_set("k", "v", flags=2**64 - 1))["flags"] == 2**64 - 1
    assert decode(c.kv_set("k", "v", flags="42"))["flags"] == 42  # type: ignore[arg-type]
    for bad in (-1, 2**64, True, 1.5, "x", None):
        with pytest.raises(BadRequest, match="flags"):
            c.kv_set("k", "v", flags=bad)  # type: ignore[arg-type]


def test_cas_accepts_zero_ints_and_query_strings() -> None:
    assert decode(c.kv_set("k", "v", cas=0))["cas"] == 0
    assert decode(c.kv_set("k", "v", cas="17"))["cas"] == 17  # type: ignore[arg-type]
    assert decode(c.kv_set("k", "v"))["cas"] is None
    for bad in (-1, "abc", 1.0, False):
        with pytest.raises(BadRequest, match="cas"):
            c.kv_set("k", "v", cas=bad)  # type: ignore[arg-type]


def test_delete_forms() -> None:
    assert decode(c.kv_delete("a")) == {"op": "kv_delete", "key": "a", "cas": None,
                                        "recurse": False}
    assert decode(c.kv_delete("a/", recurse=True))["recurse"] is True
    assert decode(c.kv_delete("", recurse=True))["key"] == ""  # everything
    with pytest.raises(BadRequest, match="empty"):
        c.kv_delete("")
    with pytest.raises(BadRequest, match="recurse"):
        c.kv_delete("a", cas=3, recurse=True)
    with pytest.raises(BadRequest, match="'/'"):
        c.kv_delete("/a", recurse=True)


def test_prefix_validation_allows_empty_only() -> None:
    assert c.validate_prefix("") == ""
    assert c.validate_prefix("a/") == "a/"
    with pytest.raises(BadRequest):
        c.validate_prefix("a/../b")
    with pytest.raises(BadRequest):
        c.validate_prefix(None)


# ----------------------------------------------------------------------------- txn


def test_txn_normalises_ops() -> None:
    cmd = decode(c.txn([
        {"verb": "set", "key": "a", "value": "1", "flags": 3},
        {"verb": "cas", "key": "b", "value": "2", "index": 0},
        {"verb": "delete", "key": "c"},
        {"verb": "delete-cas", "key": "d", "index": 9},
        {"verb": "get", "key": "e"},
        {"verb": "check-index", "key": "f", "index": "4"},
    ]))
    assert cmd["ops"] == [
        ["set", "a", b"1", 3, None],
        ["cas", "b", b"2", 0, 0],
        ["delete", "c", None, 0, None],
        ["delete-cas", "d", None, 0, 9],
        ["get", "e", None, 0, None],
        ["check-index", "f", None, 0, 4],
    ]


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        ("nope", "must be a list"),
        ([], "at least one"),
        ([{"verb": "get", "key": "a"}] * 65, "at most 64"),
        (["x"], "ops[0] must be an object"),
        ([{"verb": "upsert", "key": "a"}], "ops[0].verb"),
        ([{"verb": "get", "key": "a"}, {"verb": "set", "key": "b"}],
         "ops[1]: A set op needs a value"),
        ([{"verb": "cas", "key": "a", "value": "v"}], "needs an index"),
        ([{"verb": "delete-cas", "key": "a"}], "needs an index"),
        ([{"verb": "check-index", "key": "a"}], "needs an index"),
        ([{"verb": "get", "key": "a", "value": "v"}], "takes no value"),
        ([{"verb": "delete", "key": "a", "index": 3}], "takes no index"),
        ([{"verb": "get", "key": "/a"}], "ops[0]: The key"),
        ([{"verb": "get", "key": "a", "extra": 1}], "unknown fields: extra"),
        ([{"verb": "cas", "key": "a", "value": "v", "index": -1}], "index"),
    ],
)
def test_txn_refusals(ops: Any, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        c.txn(ops)
    assert fragment in info.value.message


def test_txn_accepts_64_ops_and_reports_large_values_as_413() -> None:
    c.txn([{"verb": "get", "key": f"k{i}"} for i in range(64)])
    with pytest.raises(TooLarge, match=r"ops\[1\]"):
        c.txn([{"verb": "get", "key": "a"},
               {"verb": "set", "key": "b", "value": "x" * (c.MAX_VALUE_BYTES + 1)}])


# ----------------------------------------------------------------------------- services


def test_service_defaults_and_normalisation() -> None:
    svc = decode(c.service_register({"name": "web"}))["service"]
    assert svc == {"id": "web", "name": "web", "address": "", "port": 0, "tags": [], "meta": {},
                   "ttl": None, "checks": []}
    svc = decode(c.service_register(
        {"name": "web", "id": "web-1", "address": "10.0.0.1", "port": 8080, "tags": ["a", "b"],
         "meta": {"z": "1", "a": "2"}, "checks": [{"tcp": "10.0.0.1:8080"}]}, ttl="30s"))["service"]
    assert svc["id"] == "web-1" and svc["ttl"] == 30.0
    assert list(svc["meta"]) == ["a", "z"]  # sorted: deterministic bytes everywhere
    assert svc["checks"] == [{"id": "service:web-1", "name": "Service 'web' check", "kind": "tcp",
                              "target": "10.0.0.1:8080", "interval": 10.0, "timeout": 5.0,
                              "ttl": None, "dca": None}]


def test_service_ttl_from_instance_or_argument() -> None:
    assert decode(c.service_register({"name": "a", "ttl": "1m"}))["service"]["ttl"] == 60.0
    assert decode(c.service_register({"name": "a", "ttl": "1m"}, ttl=5))["service"]["ttl"] == 5.0
    assert decode(c.service_register({"name": "a"}, ttl=0.25))["service"]["ttl"] == 0.25


def test_check_ids_default_by_position() -> None:
    svc = decode(c.service_register({"name": "web", "checks": [
        {"ttl": "10s"}, {"id": "mine", "http": "http://h/"}, {"tcp": "h:1"}]}))["service"]
    assert [ch["id"] for ch in svc["checks"]] == ["service:web:1", "mine", "service:web:3"]
    ttl = svc["checks"][0]
    assert ttl["kind"] == "ttl" and ttl["ttl"] == 10.0 and ttl["interval"] is None


def test_durations_are_go_style_and_rounded_to_ms() -> None:
    svc = decode(c.service_register({"name": "w", "checks": [
        {"http": "https://h/x", "interval": "1m30s", "timeout": "1500ms",
         "deregister_critical_after": "1h"}]}))["service"]
    chk = svc["checks"][0]
    assert (chk["interval"], chk["timeout"], chk["dca"]) == (90.0, 1.5, 3600.0)


@pytest.mark.parametrize(
    ("instance", "fragment"),
    [
        ("web", "must be an object"),
        ({}, "needs a name"),
        ({"name": ""}, "must not be empty"),
        ({"name": "a/b"}, "must not contain '/'"),
        ({"name": "a\tb"}, "control characters"),
        ({"name": 5}, "must be a string"),
        ({"name": "w", "id": "x/y"}, "service id"),
        ({"name": "w", "port": 70000}, "port"),
        ({"name": "w", "port": -1}, "port"),
        ({"name": "w", "port": "80"}, "port"),
        ({"name": "w", "port": True}, "port"),
        ({"name": "w", "address": 1}, "address"),
        ({"name": "w", "tags": "a"}, "tags must be a list"),
        ({"name": "w", "tags": [1]}, "tag must be a string"),
        ({"name": "w", "tags": ["t"] * 65}, "at most 64 tags"),
        ({"name": "w", "meta": ["a"]}, "meta must be an object"),
        ({"name": "w", "meta": {"a": 1}}, "meta value"),
        ({"name": "w", "meta": {"bad key": "1"}}, "Meta key"),
        ({"name": "w", "Tags": []}, "Unknown service fields: Tags"),
        ({"name": "w", "ttl": "soon"}, "service ttl is invalid"),
        ({"name": "w", "ttl": "0s"}, "at least 1ms"),
        ({"name": "w", "ttl": "0.1ms"}, "at least 1ms"),
        ({"name": "w", "ttl": 1e308}, "at most 3650 days"),
        ({"name": "w", "ttl": float("nan")}, "at most 3650 days"),
        ({"name": "w", "ttl": "99999999999h"}, "at most 3650 days"),
        ({"name": "w", "ttl": [1]}, "duration string"),
        ({"name": "w", "checks": {}}, "checks must be a list"),
        ({"name": "w", "checks": ["x"]}, "checks[0] must be an object"),
        ({"name": "w", "checks": [{}]}, "exactly one of http, tcp or ttl"),
        ({"name": "w", "checks": [{"http": "http://h/", "ttl": "1s"}]}, "exactly one"),
        ({"name": "w", "checks": [{"http": "ftp://h/"}]}, "http:// or https://"),
        ({"name": "w", "checks": [{"http": "http://"}]}, "http:// or https://"),
        ({"name": "w", "checks": [{"http": "http://h/ x"}]}, "whitespace"),
        ({"name": "w", "checks": [{"tcp": "host"}]}, "host:port"),
        ({"name": "w", "checks": [{"tcp": "host:0"}]}, "host:port"),
        ({"name": "w", "checks": [{"tcp": ":80"}]}, "host:port"),
        ({"name": "w", "checks": [{"ttl": "forever"}]}, "checks[0].ttl is invalid"),
        ({"name": "w", "checks": [{"tcp": "h:1", "interval": "-1s"}]}, "checks[0].interval"),
        ({"name": "w", "checks": [{"tcp": "h:1", "timeout": "1"}]}, "checks[0].timeout"),
        ({"name": "w", "checks": [{"ttl": "1s", "deregister_critical_after": "x"}]},
         "deregister_critical_after"),
        ({"name": "w", "checks": [{"ttl": "1s", "status": "passing"}]}, "unknown fields: status"),
        ({"name": "w", "checks": [{"ttl": "1s", "id": "c"}, {"ttl": "1s", "id": "c"}]},
         "Duplicate check id 'c'"),
        ({"name": "w", "checks": [{"ttl": "1s"}] * 33}, "at most 32 checks"),
    ],
)
def test_service_refusals(instance: Any, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        c.service_register(instance)
    assert fragment in info.value.message


def test_ids_for_deregister_heartbeat_and_checks_are_validated() -> None:
    assert decode(c.service_deregister("web")) == {"op": "service_deregister", "id": "web"}
    assert decode(c.service_heartbeat("web")) == {"op": "service_heartbeat", "id": "web"}
    for build in (c.service_deregister, c.service_heartbeat):
        with pytest.raises(BadRequest):
            build("")
        with pytest.raises(BadRequest):
            build(None)  # type: ignore[arg-type]


def test_check_update_status_output_and_origin() -> None:
    assert decode(c.check_update("chk", "warning", "slow")) == {
        "op": "check_ttl", "id": "chk", "status": "warning", "output": "slow"}
    assert decode(c.check_update("chk", "passing", None, from_runner=True))["op"] == "check_set"
    assert len(decode(c.check_update("chk", "passing", "x" * 10_000))["output"]) == \
        c.MAX_OUTPUT_LEN
    with pytest.raises(BadRequest, match="passing, warning, critical"):
        c.check_update("chk", "ok")
    with pytest.raises(BadRequest, match="output"):
        c.check_update("chk", "passing", 5)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="UTF-8"):
        c.check_update("chk", "passing", "bad\udc80")
    with pytest.raises(BadRequest, match="status"):
        c.check_update("chk", ["passing"])  # type: ignore[arg-type]


def test_leader_commands_carry_the_index_they_were_decided_on() -> None:
    assert decode(c.service_expire("web", 7)) == {"op": "service_expire", "id": "web", "seen": 7}
    assert decode(c.check_expire("c", 8)) == {"op": "check_expire", "id": "c", "seen": 8}
    assert decode(c.check_reap("c", 9)) == {"op": "check_reap", "id": "c", "seen": 9}


# ----------------------------------------------------------------------------- import


def test_import_document_validates_everything_before_returning_anything() -> None:
    web = {"name": "web", "checks": [{"ttl": "5s"}]}
    doc: dict[str, Any] = {"version": 1, "index": 99,
           "kv": [{"key": "a", "value": "1"}, {"key": "b", "value": "2", "flags": 5,
                                               "modify_index": 3}],
           "services": [web]}
    chunks = [decode(x) for x in c.import_document(doc)]
    assert chunks == [{"op": "import", "kv": [["a", b"1", 0], ["b", b"2", 5]],
                       "services": [decode(c.service_register(web))["service"]]}]
    assert [decode(x) for x in c.import_document({})] == [{"op": "import", "kv": [],
                                                          "services": []}]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "must be an object"),
        ({"version": 2}, "Unsupported export version 2"),
        ({"version": "1"}, "Unsupported export version"),
        ({"extra": 1}, "Unknown import fields: extra"),
        ({"kv": {}}, "kv must be a list"),
        ({"kv": [{"key": "a"}]}, "kv[0]: The value must be a string"),
        ({"kv": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}, "kv[1]: duplicate"),
        ({"kv": [{"key": "a", "value": "1", "wat": 1}]}, "kv[0] has unknown fields: wat"),
        ({"services": [{"name": "a"}, {"name": "a"}]}, "services[1]: duplicate service id"),
        ({"services": [{"name": "a", "checks": [{"id": "c", "ttl": "1s"}]},
                       {"name": "b", "checks": [{"id": "c", "ttl": "1s"}]}]},
         "check id 'c' is also used by service 'a'"),
        ({"services": [{"name": "a", "port": "x"}]}, "services[0]: The port"),
    ],
)
def test_import_refusals(doc: Any, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        c.import_document(doc)
    assert fragment in info.value.message


def test_import_large_values_are_413() -> None:
    with pytest.raises(TooLarge, match=r"kv\[0\]"):
        c.import_document({"kv": [{"key": "a", "value": "x" * (c.MAX_VALUE_BYTES + 1)}]})


def test_import_chunks_are_bounded_by_items_and_bytes() -> None:
    n = 2 * c.IMPORT_CHUNK_ITEMS + 7
    doc = {"kv": [{"key": f"k{i:05}", "value": "v"} for i in range(n)],
           "services": [{"name": f"s{i}"} for i in range(3)]}
    chunks = [decode(x) for x in c.import_document(doc)]
    assert [len(ch["kv"]) for ch in chunks] == [c.IMPORT_CHUNK_ITEMS, c.IMPORT_CHUNK_ITEMS, 7]
    assert [len(ch["services"]) for ch in chunks] == [0, 0, 3]
    assert [item[0] for ch in chunks for item in ch["kv"]] == [f"k{i:05}" for i in range(n)]
    big = "x" * (c.MAX_VALUE_BYTES - 1000)
    chunks = [decode(x) for x in c.import_document(
        {"kv": [{"key": f"b{i}", "value": big} for i in range(20)]})]
    assert len(chunks) > 1
    assert all(sum(len(i[1]) for i in ch["kv"]) <= c.IMPORT_CHUNK_BYTES for ch in chunks)
    assert sum(len(ch["kv"]) for ch in chunks) == 20


def test_import_chunk_builder_validates_its_part() -> None:
    assert decode(c.import_chunk({"kv": [{"key": "a", "value": "b"}]}))["kv"] == [["a", b"b", 0]]
    with pytest.raises(BadRequest):
        c.import_chunk({"kv": [{"key": "/a", "value": "b"}]})
    with pytest.raises(BadRequest):
        c.import_chunk("x")
