"""Builders refuse anything malformed with BadRequest/TooLarge only, and whatever they accept
applies without an internal error: the HTTP layer relies on exactly that."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from konsul.errors import BadRequest, TooLarge
from konsul.store import Reason, Rejected, StateMachine
from konsul.store import commands as c

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True) | st.text(max_size=6))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values (9 in 10), sometimes anything at all."""
    return st.integers(0, 9).flatmap(lambda n: json_values if n == 0 else valid)


check_defs = st.fixed_dictionaries(
    {},
    optional={
        "id": maybe(st.sampled_from(["c1", "c2", ""])),
        "name": maybe(st.text(max_size=5)),
        "http": maybe(st.sampled_from(["http://h/", "https://h:1/x", "ftp://x"])),
        "tcp": maybe(st.sampled_from(["h:1", "h:99999", "[::1]:80", "h"])),
        "ttl": maybe(st.sampled_from(["1s", "1m30s", "0", "5", 3])),
        "interval": maybe(st.sampled_from(["1s", "-1s", "1h", 0.5])),
        "timeout": maybe(st.sampled_from(["1s", "x"])),
        "deregister_critical_after": maybe(st.sampled_from(["1m", "1d"])),
    },
)

instances = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["web", "db", "a/b", ""]))},
    optional={
        "id": maybe(st.sampled_from(["w1", "w2", ""])),
        "address": maybe(st.text(max_size=5)),
        "port": maybe(st.integers(-1, 70000)),
        "tags": maybe(st.lists(maybe(st.text(max_size=3)), max_size=3)),
        "meta": maybe(st.dictionaries(st.sampled_from(["a", "b-c", "bad key"]),
                                      maybe(st.text(max_size=3)), max_size=3)),
        "checks": maybe(st.lists(check_defs, max_size=3)),
        "ttl": maybe(st.sampled_from(["10s", "0s"])),
        "extra": json_values,
    },
)

def shaped_op(verb: str) -> st.SearchStrategy[dict[str, Any]]:
    """An op with the fields its verb wants (each possibly garbage)."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "verb": st.just(verb), "key": maybe(st.sampled_from(["a", "b/c", "d"]))}
    if verb in ("set", "cas"):
        fields["value"] = maybe(st.text(max_size=3))
    if verb in ("cas", "delete-cas", "check-index"):
        fields["index"] = maybe(st.integers(0, 5))
    return st.fixed_dictionaries(fields)


txn_ops = st.one_of(
    st.sampled_from(c.TXN_VERBS).flatmap(shaped_op),
    st.sampled_from(c.TXN_VERBS).flatmap(shaped_op),
    st.fixed_dictionaries(
        {"verb": maybe(st.sampled_from(c.TXN_VERBS)), "key": maybe(st.sampled_from(["a", "b"]))},
        optional={"value": maybe(st.text(max_size=3)), "flags": maybe(st.integers(0, 3)),
                  "index": maybe(st.integers(0, 5))},
    ),
)


def build_or_refuse(build: Any, *args: Any) -> bytes | None:
    try:
        data: bytes = build(*args)
    except (BadRequest, TooLarge) as exc:
        assert exc.message  # a sentence for a person, always
        return None
    return data


def applies_cleanly(sm: StateMachine, data: bytes | None) -> None:
    if data is None:
        return
    result = sm.apply(sm.last_applied + 1, data)
    assert not (isinstance(result, Rejected) and result.reason is Reason.MALFORMED), result
    assert sm.apply_errors == 0


@SETTINGS
@given(st.lists(instances, min_size=1, max_size=4), st.sampled_from([None, "5s", 0, "x"]))
def test_any_service_input(batch: list[Any], ttl: Any) -> None:
    sm = StateMachine()
    sm.apply(1, c.service_register({"name": "x", "checks": [{"id": "c2", "http": "http://h/"}]}))
    for instance in batch:
        applies_cleanly(sm, build_or_refuse(c.service_register, instance, ttl))


@SETTINGS
@given(maybe(st.lists(txn_ops, min_size=1, max_size=5)))
def test_any_txn_input(ops: Any) -> None:
    sm = StateMachine()
    sm.apply(1, c.kv_set("a", "1"))
    applies_cleanly(sm, build_or_refuse(c.txn, ops))


@SETTINGS
@given(maybe(st.sampled_from(["a", "a/", "/a", "a/../b", ""])), maybe(st.text(max_size=3)),
       maybe(st.integers(0, 3)), maybe(st.none() | st.integers(0, 3)))
def test_any_kv_input(key: Any, value: Any, flags: Any, cas: Any) -> None:
    sm = StateMachine()
    applies_cleanly(sm, build_or_refuse(c.kv_set, key, value, flags, cas))
    applies_cleanly(sm, build_or_refuse(c.kv_delete, key, cas, bool(flags)))


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "version": maybe(st.just(1)), "index": json_values,
    "kv": maybe(st.lists(st.fixed_dictionaries(
        {"key": maybe(st.sampled_from(["a", "b", "a"])), "value": maybe(st.text(max_size=3))},
        optional={"flags": maybe(st.integers(0, 2))}), max_size=3)),
    "services": maybe(st.lists(instances, max_size=3)),
}))
def test_any_import_document(doc: Any) -> None:
    sm = StateMachine()
    sm.apply(1, c.service_register({"name": "other", "checks": [{"id": "c1", "ttl": "1s"}]}))
    try:
        chunks = c.import_document(doc)
    except (BadRequest, TooLarge):
        return
    for chunk in chunks:
        applies_cleanly(sm, chunk)


@SETTINGS
@given(maybe(st.sampled_from(["c1", "w", "nope", ""])), maybe(st.sampled_from(["passing",
                                                                             "critical"])),
       maybe(st.none() | st.text(max_size=3)))
def test_any_check_update(check_id: Any, status: Any, output: Any) -> None:
    sm = StateMachine()
    sm.apply(1, c.service_register({"name": "w", "checks": [{"id": "c1", "ttl": "1s"}]}))
    applies_cleanly(sm, build_or_refuse(c.check_update, check_id, status, output))
    applies_cleanly(sm, build_or_refuse(c.service_heartbeat, check_id))
    applies_cleanly(sm, build_or_refuse(c.service_deregister, check_id))
