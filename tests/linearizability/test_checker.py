"""The checker on hand-written histories, on histories generated from a sequential execution
(always linearizable), on mutations of them that provably are not, and against a brute-force
enumeration of every linearization on small random histories."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.linearizability.checker import (
    Kind,
    Op,
    State,
    Status,
    check,
    check_key,
    dump,
    lost_acked_write,
    minimise,
)

# ------------------------------------------------------------------------------ a tiny DSL


class H:
    """Builds one key's history: ``h.write("a", 0, 10, index=5)`` and so on (times in ns)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, kind: Any, call: int, ret: int | None, status: Any = "ok", **kw: Any) -> H:
        if ret is None and status == "ok":
            status = "unknown"
        self.ops.append(Op(len(self.ops), kw.pop("process", f"c{len(self.ops)}"), "k", kind,
                           status, call, ret, **kw))
        return self

    def write(self, value: str, call: int, ret: int | None, index: int | None = None,
              status: str = "ok", **kw: Any) -> H:
        return self._add("write", call, ret, status, value=value, index=index, **kw)

    def cas(self, expected: int, value: str, call: int, ret: int | None,
            index: int | None = None, status: str = "ok") -> H:
        return self._add("cas", call, ret, status, value=value, expected=expected, index=index)

    def read(self, value: str | None, index: int | None, call: int, ret: int, **kw: Any) -> H:
        return self._add("read", call, ret, value=value, index=index, **kw)

    def delete(self, call: int, ret: int | None, deleted: int | None = None,
               expected: int | None = None, status: str = "ok") -> H:
        return self._add("delete", call, ret, status, deleted=deleted, expected=expected)

    def verdict(self) -> bool | None:
        return check_key("k", self.ops).ok


# ------------------------------------------------------------------ hand-written histories


def test_empty_and_trivial_histories_are_linearizable() -> None:
    assert H().verdict() is True
    assert H().read(None, None, 0, 10).verdict() is True
    assert H().write("a", 0, 10, index=3).read("a", 3, 20, 30).verdict() is True


def test_stale_read_after_an_acknowledged_write_is_rejected() -> None:
    h = H().write("a", 0, 10, index=3).write("b", 20, 30, index=4).read("a", 3, 40, 50)
    result = check_key("k", h.ops)
    assert result.ok is False
    assert "'b'" in result.reason  # the register holds b when the read cannot go next
    assert any(line.startswith("!!") for line in dump(h.ops, result))


def test_read_of_a_value_before_its_write_began_is_rejected() -> None:
    assert H().read("a", 3, 0, 10).write("a", 20, 30, index=3).verdict() is False


def test_lost_write_is_rejected_and_reported_as_lost() -> None:
    h = H().write("a", 0, 10, index=3).read(None, None, 20, 30, process="final")
    assert h.verdict() is False
    assert lost_acked_write(h.ops) != ""
    fine = H().write("a", 0, 10, index=3).read("a", 3, 20, 30, process="final")
    assert lost_acked_write(fine.ops) == ""


def test_lost_acked_allows_concurrent_last_writes_and_unknown_ones() -> None:
    h = H().write("a", 0, 10, index=3).write("b", 5, 15, index=4)
    assert lost_acked_write(H().write("a", 0, 10, index=3).write("b", 5, 15, index=4)
                            .read("a", 3, 40, 50, process="final").ops) == ""
    h.write("c", 20, None).read("c", 9, 40, 50, process="final")
    assert lost_acked_write(h.ops) == ""
    stale = H().write("a", 0, 10, index=3).write("b", 20, 30, index=4)
    stale.read("a", 3, 40, 50, process="final")
    assert "'a'" in lost_acked_write(stale.ops)


def test_concurrent_overlapping_operations_may_take_either_order() -> None:
    # The write spans both reads: the first may precede it, the second follow it.
    assert H().write("a", 0, 100, index=3).read(None, None, 10, 20).read(
        "a", 3, 30, 40).read("a", 3, 50, 60).verdict() is True
    # Two overlapping writes: either may win, but once a read saw the winner it stays.
    two = H().write("a", 0, 50, index=3).write("b", 10, 60, index=4)
    assert two.read("a", 3, 70, 80).verdict() is True
    assert two.read("b", 4, 90, 100).verdict() is False


def test_new_then_old_inversion_is_rejected() -> None:
    h = H().write("a", 0, 100, index=3).read("a", 3, 10, 20).read(None, None, 30, 40)
    assert h.verdict() is False


def test_unknown_writes_may_apply_late_or_never() -> None:
    late = H().write("a", 0, None).read(None, None, 100, 110).read("a", 3, 200, 210)
    assert late.verdict() is True
    never = H().write("a", 0, None).read(None, None, 100, 110).read(None, None, 200, 210)
    assert never.verdict() is True
    # ...but not before they were invoked, nor undo themselves once seen.
    assert H().read("a", 3, 0, 10).write("a", 20, None).verdict() is False
    seen = H().write("a", 0, None).read("a", 3, 100, 110).read(None, None, 200, 210)
    assert seen.verdict() is False


def test_an_unknown_write_can_explain_a_cas_conflict() -> None:
    base = H().write("a", 0, 10, index=3)
    assert replace_ops(base).cas(3, "b", 50, 60, status="conflict").verdict() is False
    explained = replace_ops(base).write("x", 20, None).cas(3, "b", 50, 60, status="conflict")
    assert explained.verdict() is True


def test_cas_that_succeeded_on_a_stale_index_is_rejected() -> None:
    h = H().write("a", 0, 10, index=5).write("b", 20, 30, index=6)
    assert replace_ops(h).cas(5, "c", 40, 50, index=7).verdict() is False
    assert replace_ops(h).cas(6, "c", 40, 50, index=7).read("c", 7, 60, 70).verdict() is True
    # create-only (cas=0) cannot succeed on a key that exists
    assert replace_ops(h).cas(0, "c", 40, 50, index=7).verdict() is False
    assert H().cas(0, "c", 0, 10, index=2).cas(0, "d", 20, 30, status="conflict").verdict()


def test_delete_counts_and_conditional_deletes() -> None:
    h = H().write("a", 0, 10, index=3)
    assert replace_ops(h).delete(20, 30, deleted=0).verdict() is False
    assert replace_ops(h).delete(20, 30, deleted=1).read(None, None, 40, 50).verdict() is True
    assert replace_ops(h).delete(20, 30, deleted=1, expected=3).verdict() is True
    assert replace_ops(h).delete(20, 30, expected=2, status="conflict").verdict() is True
    assert replace_ops(h).delete(20, 30, deleted=1, expected=2).verdict() is False
    assert H().delete(0, 10, deleted=0, expected=7).verdict() is True


def test_failed_operations_never_took_effect() -> None:
    assert H().write("a", 0, 10, status="fail").read(None, None, 20, 30).verdict() is True
    assert H().write("a", 0, 10, status="fail").read("a", 3, 20, 30).verdict() is False
    refused = H().cas(0, "a", 0, 10, status="conflict").read("a", 3, 20, 30)
    assert refused.verdict() is False


def test_inconsistent_indexes_are_violations() -> None:
    h = H().write("a", 0, 10, index=3).read("a", 4, 20, 30)
    assert "modify_index" in check_key("k", h.ops).reason
    two = H().write("a", 0, 10, index=3).write("b", 20, 30, index=3)
    assert check_key("k", two.ops).ok is False


def test_a_value_written_twice_is_a_malformed_history() -> None:
    result = check_key("k", H().write("a", 0, 10, index=3).write("a", 20, 30, index=4).ops)
    assert result.ok is False and "unique" in result.reason


def test_keys_are_checked_independently() -> None:
    good = H().write("a", 0, 10, index=3).ops
    bad = [replace(op, key="j", id=op.id + 10) for op in
           H().write("b", 0, 10, index=4).read(None, None, 20, 30).ops]
    verdicts = {r.key: r.ok for r in check(good + bad)}
    assert verdicts == {"k": True, "j": False}


def replace_ops(h: H) -> H:
    """A copy, to extend one base history in several ways."""
    copy = H()
    copy.ops = list(h.ops)
    return copy


# ------------------------------------------------------- generated from a true execution


class Register:
    """What Konsul does to one key: value, modify index, indexes from a growing log."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.value: str | None = None
        self.index = 0
        self.log = 1
        self.seen: list[int] = [0]

    def bump(self) -> int:
        self.log += self.rng.randint(1, 3)  # other keys' entries interleave in the log
        return self.log


def execute(rng: random.Random, n: int, clients: int, unknown_rate: float,
            overlap: int) -> list[Op]:
    """Run ``n`` operations against a true register at increasing linearization points and
    record what clients would see, with call/return times around those points."""
    reg = Register(rng)
    ops: list[Op] = []
    busy_until = [0] * clients
    t = 0
    for i in range(n):
        t += rng.randint(1, 10)
        c = rng.randrange(clients)
        call = max(busy_until[c] + 1, t - rng.randint(0, overlap))
        t = max(t, call)
        ret = t + rng.randint(0, overlap)
        busy_until[c] = ret
        op = _apply(reg, rng, i, f"c{c}", call, ret)
        roll = rng.random()
        if roll < unknown_rate and op.kind != "read":
            op = replace(op, status="unknown", ret=None, index=None, deleted=None)
        ops.append(op)
        # an unknown outcome that never applied: invisible to the register
        if rng.random() < unknown_rate / 2:
            ops.append(Op(10_000 + i, f"c{c}", "k", "write", "unknown", call, None, f"lost{i}"))
    return ops


def _apply(reg: Register, rng: random.Random, i: int, proc: str, call: int, ret: int) -> Op:
    kinds: list[Kind] = ["read", "read", "write", "cas", "delete"]
    kind = rng.choice(kinds)
    base = Op(i, proc, "k", kind, "ok", call, ret)
    if kind == "read":
        return replace(base, value=reg.value, index=reg.index if reg.value is not None else None)
    if kind == "write":
        reg.value, reg.index = f"v{i}", reg.bump()
        reg.seen.append(reg.index)
        return replace(base, value=reg.value, index=reg.index)
    expected = rng.choice([reg.index, reg.index, rng.choice(reg.seen)])
    if kind == "delete":
        conditional = rng.random() < 0.5
        if conditional and reg.value is not None and expected != reg.index:
            return replace(base, status="conflict", expected=expected)
        deleted = int(reg.value is not None)
        reg.value, reg.index = None, 0
        reg.bump()
        return replace(base, deleted=deleted, expected=expected if conditional else None)
    if expected != reg.index:
        return replace(base, status="conflict", expected=expected, value=f"v{i}")
    reg.value, reg.index = f"v{i}", reg.bump()
    reg.seen.append(reg.index)
    return replace(base, expected=expected, value=reg.value, index=reg.index)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 60), st.integers(1, 5),
       st.sampled_from([0.0, 0.1, 0.3]), st.integers(0, 40))
def test_histories_from_a_true_execution_are_linearizable(
    seed: int, n: int, clients: int, unknown_rate: float, overlap: int
) -> None:
    ops = execute(random.Random(seed), n, clients, unknown_rate, overlap)
    result = check_key("k", ops)
    assert result.ok is True, "\n".join(dump(ops, result))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(2, 80), st.data())
def test_a_wrong_read_in_a_sequential_history_is_rejected(
    seed: int, n: int, data: st.DataObject
) -> None:
    """Without overlap or unknown outcomes there is one candidate order, so any read that
    returns something else than the register held is provably a violation."""
    ops = execute(random.Random(seed), n, 1, 0.0, 0)
    reads = [op for op in ops if op.kind == "read"]
    if not reads:
        return
    victim = data.draw(st.sampled_from(reads))
    written = {op.value: op.index for op in ops if op.status == "ok" and op.kind in ("write",
                                                                                     "cas")}
    choices: list[State] = [v for v in written if v != victim.value]
    if victim.value is not None:
        choices.append(None)
    if not choices:
        return
    wrong = data.draw(st.sampled_from(choices))
    mutated = [replace(op, value=wrong, index=written.get(wrong) if wrong else None)
               if op is victim else op for op in ops]
    assert check_key("k", mutated).ok is False


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 60), st.data())
def test_a_flipped_outcome_in_a_sequential_history_is_rejected(
    seed: int, n: int, data: st.DataObject
) -> None:
    ops = execute(random.Random(seed), n, 1, 0.0, 0)
    flippable = [op for op in ops if op.status == "conflict" or op.kind == "delete"]
    if not flippable:
        return
    victim = data.draw(st.sampled_from(flippable))
    if victim.status == "conflict":  # claim the refused CAS succeeded (with a fresh index)
        flipped = replace(victim, status="ok", index=10**9, deleted=1)
    else:  # claim the delete found the opposite
        flipped = replace(victim, deleted=1 - (victim.deleted or 0))
    mutated = [flipped if op is victim else op for op in ops]
    assert check_key("k", mutated).ok is False


# ---------------------------------------------- differential test against brute force


def brute_force(ops: list[Op]) -> bool:
    """Every order of every subset of unknown operations, from the raw semantics: the state is
    (value, the op that wrote it), and unknown writes get their modify index bound on demand."""
    ops = [op for op in ops if op.status != "fail" and not (op.kind == "read"
                                                             and op.status != "ok")]
    known = {op.id: op.index for op in ops if op.status == "ok" and op.index is not None
             and op.kind != "read"}

    def before(a: Op, b: Op) -> bool:
        return a.ret is not None and a.status != "unknown" and a.ret < b.call

    def index_of(writer: Op | None, binding: dict[int, int]) -> int | None:
        if writer is None:
            return 0
        return known.get(writer.id, binding.get(writer.id))

    def bind(writer: Op, index: int, binding: dict[int, int]) -> dict[int, int] | None:
        taken = set(known.values()) | set(binding.values())
        if index in taken or index == 0:
            return None
        return {**binding, writer.id: index}

    def match_options(expected: int, writer: Op | None,
                      binding: dict[int, int]) -> list[tuple[bool, dict[int, int]]]:
        idx = index_of(writer, binding)
        if idx is not None:
            return [(idx == expected, binding)]
        assert writer is not None
        out: list[tuple[bool, dict[int, int]]] = [(False, binding)]
        bound = bind(writer, expected, binding)
        if bound is not None:
            out.append((True, bound))
        return out

    def steps(op: Op, writer: Op | None,
              binding: dict[int, int]) -> list[tuple[Op | None, dict[int, int]]]:
        present = writer is not None
        if op.kind == "read":
            if (op.value is None) != (not present):
                return []
            if writer is None:
                return [(None, binding)]
            if writer.value != op.value or op.index is None:
                return []
            idx = index_of(writer, binding)
            if idx is None:
                bound = bind(writer, op.index, binding)
                return [] if bound is None else [(writer, bound)]
            return [(writer, binding)] if idx == op.index else []
        if op.kind == "write":
            return [(op, binding)]
        assert op.expected is not None or op.kind == "delete"
        if op.kind == "delete" and op.expected is None:
            if op.status == "ok" and op.deleted is not None and op.deleted != int(present):
                return []
            return [(None, binding)]
        if op.kind == "delete" and not present:
            ok = op.status != "conflict" and not op.deleted
            return [(None, binding)] if ok else []
        if op.kind == "delete" and op.status == "ok" and op.deleted == 0:
            return []
        assert op.expected is not None
        applied = None if op.kind == "delete" else op
        out: list[tuple[Op | None, dict[int, int]]] = []
        for matched, b in match_options(op.expected, writer, binding):
            if op.status == "ok" and matched:
                out.append((applied, b))
            elif op.status == "conflict" and not matched:
                out.append((writer, b))
            elif op.status == "unknown":
                out.append((applied if matched else writer, b))
        return out

    def search(left: tuple[Op, ...], writer: Op | None, binding: dict[int, int]) -> bool:
        if all(op.status == "unknown" for op in left):
            return True
        for i, op in enumerate(left):
            rest = left[:i] + left[i + 1:]
            if any(before(other, op) for other in rest):
                continue
            for nxt, b in steps(op, writer, binding):
                if search(rest, nxt, b):
                    return True
        return False

    return search(tuple(ops), None, {})


@st.composite
def small_histories(draw: st.DrawFn) -> list[Op]:
    seed = draw(st.integers(0, 2**32))
    n = draw(st.integers(2, 6))
    ops = execute(random.Random(seed), n, draw(st.integers(1, 3)),
                  draw(st.sampled_from([0.0, 0.3])), draw(st.integers(0, 30)))[:7]
    # Perturb: a read returns another written value, a time moves, an outcome changes.
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(ops) - 1))
        op = ops[i]
        writes = [o for o in ops if o.kind in ("write", "cas") and o.value is not None]
        if op.kind == "read" and writes and draw(st.booleans()):
            src = draw(st.sampled_from(writes))
            index = draw(st.sampled_from([src.index or 99, 99]))
            ops[i] = replace(op, value=src.value, index=index)
        elif op.kind == "read" and op.value is not None and draw(st.booleans()):
            ops[i] = replace(op, value=None, index=None)
        elif op.kind != "read" and draw(st.booleans()):
            statuses: list[Status] = ["ok", "conflict", "unknown", "fail"]
            status = draw(st.sampled_from(statuses))
            if op.kind == "write" and status == "conflict":
                status = "fail"
            ret = None if status == "unknown" else (op.ret if op.ret is not None else op.call + 5)
            ops[i] = replace(op, status=status, ret=ret)
        elif op.ret is not None:
            shift = draw(st.integers(-30, 30))
            ops[i] = replace(op, call=op.call + shift, ret=max(op.call + shift, op.ret + shift))
    return ops


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories())
def test_checker_agrees_with_brute_force(ops: list[Op]) -> None:
    result = check_key("k", ops)
    assert result.ok is brute_force(ops), "\n".join(dump(ops, result))


def test_brute_force_itself_sees_both_verdicts() -> None:
    """The differential test above is only worth something if it meets both answers."""
    rng = random.Random(7)
    seen = set()
    for _ in range(300):
        ops = _perturbed(rng)
        seen.add(brute_force(ops))
    assert seen == {True, False}


def _perturbed(rng: random.Random) -> list[Op]:
    ops = execute(rng, rng.randint(2, 6), 2, 0.2, 20)
    i = rng.randrange(len(ops))
    if ops[i].kind == "read":
        ops[i] = replace(ops[i], value=None, index=None) if ops[i].value else replace(
            ops[i], value="v0", index=2)
    return ops


# --------------------------------------------------------------------------- performance


@pytest.mark.parametrize("unknown_rate", [0.0, 0.02])
def test_thousands_of_operations_per_key_check_quickly(unknown_rate: float) -> None:
    ops = execute(random.Random(1), 3000, 5, unknown_rate, 60)
    started = time.monotonic()
    result = check_key("k", ops)
    elapsed = time.monotonic() - started
    assert result.ok is True
    assert elapsed < 10, f"{elapsed:.1f}s for {len(ops)} ops ({result.explored} configurations)"


@pytest.mark.parametrize(("n", "unknown_rate"), [(2000, 0.0), (1000, 0.005)])
def test_a_long_violating_history_is_rejected_quickly(n: int, unknown_rate: float) -> None:
    ops = execute(random.Random(2), n, 5, unknown_rate, 60)
    reads = [i for i, op in enumerate(ops) if op.kind == "read" and op.value is not None]
    # Near the end, a read returns the very first value written, long overwritten.
    first = next(op for op in ops if op.kind == "write" and op.status == "ok")
    i = reads[-5]
    ops[i] = replace(ops[i], value=first.value, index=first.index)
    started = time.monotonic()
    result = check_key("k", ops)
    assert result.ok is False
    assert time.monotonic() - started < 20


def test_minimise_keeps_a_small_violating_core() -> None:
    ops = execute(random.Random(3), 300, 4, 0.02, 30)
    reads = [i for i, op in enumerate(ops) if op.kind == "read" and op.value is not None]
    first = next(op for op in ops if op.kind == "write" and op.status == "ok")
    i = reads[len(reads) // 2]
    ops[i] = replace(ops[i], value=first.value, index=first.index)
    small = minimise(ops, budget_seconds=30)
    assert check_key("k", small).ok is False
    definite = [op for op in small if op.status != "unknown"]
    assert len(definite) <= 4, "\n".join(dump(small))
    assert ops[i] in definite  # the stale read stays, with what shows its value was gone
