"""A linearizability checker for Konsul's KV registers (Wing & Gong search, Porcupine style).

The model is one register per key (P-compositionality: a history is linearizable iff each key's
sub-history is, so keys are checked independently).

**Model.** Every write in a test history stores a value no other operation writes (the runner
uses ``"<client>-<seq>"``), so the register's state is just the value it holds, or ``None`` when
the key is absent. Konsul's CAS compares *modify indexes*, not values: ``?cas=N`` succeeds iff the
key's ``modify_index`` is ``N`` (``0``: iff the key is absent). Because values are unique, the
index belongs to the write that stored the value, so we learn ``value -> modify_index`` from every
acknowledged write and every read (which returns both) before the search, and a CAS expecting
``N`` matches exactly the state holding the value observed with index ``N``. Two observations that
disagree (one value with two indexes, one index with two values) are a violation on their own. An
expected index nobody observed (the runner never produces one) matches a value whose index is
unknown either way: both outcomes are explored, which can only make the checker more lenient.

**Outcomes** (``Op.status``):

- ``ok``: the operation took effect, with the recorded result;
- ``conflict``: a CAS (or CAS delete) answered 409: it was applied, and its condition was false;
- ``fail``: definitely did not take effect (a 307 not followed, a 400, a 503 ``no leader``); the
  operation is dropped before the search;
- ``unknown``: timeout, reset connection, 503 ``unavailable``...: it may take effect at any time
  after its invocation, or never. It gets an infinite response time (never taking effect is the
  same as taking effect after everything else). An unknown read tells nothing and is dropped. An
  unknown write whose value some read returned certainly took effect before that read answered,
  so its response time is brought forward to the earliest such read's.

**Search.** Porcupine's algorithm: the history is a time-ordered list of call and return events;
an operation may be linearized next if its call precedes the first pending return; successful
steps remove both events; failures backtrack; configurations (set of linearized operations as a
bitmask, register state) already explored are cached, which turns the exponential search into
one that is fast on the bounded concurrency of a few clients. Two heuristics that change only the
order of exploration: operations with a definite outcome are tried before unknown ones (which
usually only matter at the end, or to explain a read), and the search stops as soon as no
operation with a response is left (unknown ones can always be appended).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

Kind = Literal["read", "write", "cas", "delete"]
Status = Literal["ok", "conflict", "fail", "unknown"]
State = str | None

INFINITY = 1 << 62  # the response time of an operation whose outcome is unknown
MUTATIONS = ("write", "cas", "delete")
# The state after an unknown write whose value nobody read: all such states behave alike (no
# read can return them, no CAS can name their index), so they share one name in the cache.
UNSEEN = "\x00unseen"


@dataclass(frozen=True)
class Op:
    """One client operation on one key, with its invocation and response times (ns)."""

    id: int
    process: str
    key: str
    kind: Kind
    status: Status
    call: int
    ret: int | None  # None when the outcome is unknown
    value: str | None = None  # write/cas: the value stored; read ok: the value read (None = 404)
    expected: int | None = None  # cas / conditional delete: the expected modify index (0 = absent)
    index: int | None = None  # write/cas ok: the entry's modify index; read ok: the key's
    deleted: int | None = None  # delete ok: how many keys it deleted (0 or 1)
    node: str = ""  # where the request went, for the dump

    def describe(self) -> str:
        if self.kind == "read":
            out = f"-> {self.value!r}@{self.index}" if self.status == "ok" else ""
            return f"read {out}".strip()
        cas = "" if self.expected is None else f" if index=={self.expected}"
        if self.kind == "delete":
            out = f" -> deleted {self.deleted}" if self.deleted is not None else ""
            return f"delete{cas}{out}"
        out = f" -> index {self.index}" if self.index is not None else ""
        return f"{self.kind} {self.value!r}{cas}{out}"


@dataclass
class Result:
    """The verdict for one key's history."""

    key: str
    ok: bool | None  # None: the search ran out of its budget
    reason: str = ""
    ops: int = 0
    explored: int = 0
    seconds: float = 0.0
    # Where the deepest attempt got stuck, to read next to the dump.
    linearized: list[int] = field(default_factory=list)
    stuck_state: State = None
    stuck_ops: list[int] = field(default_factory=list)


class HistoryError(ValueError):
    """The history breaks an assumption of the model (e.g. a value written twice)."""


# ---------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Indexes:
    """What the history tells about modify indexes: value -> index and index -> value."""

    of_value: dict[str, int]
    value_at: dict[int, str]

    def matches(self, expected: int, state: State) -> bool | None:
        """Does a CAS expecting ``expected`` match ``state``? None: cannot tell."""
        if expected == 0:
            return state is None
        owner = self.value_at.get(expected)
        if owner is not None:
            return state == owner
        if state is None or state in self.of_value:
            return False
        return None


def step(op: Op, state: State, idx: Indexes) -> list[State]:
    """The register states ``op`` may leave behind when linearized in ``state`` (empty: illegal)."""
    if op.kind == "read":
        return [state] if op.value == state else []
    if op.kind == "write":
        return [op.value]
    if op.kind == "cas":
        assert op.expected is not None
        return _conditional(op, state, idx.matches(op.expected, state), op.value)
    if op.expected is None:  # unconditional delete
        if op.status == "ok" and op.deleted is not None and (op.deleted > 0) != (state is not None):
            return []
        return [None]
    if state is None:  # a conditional delete of an absent key deletes nothing and succeeds
        return [None] if op.status != "conflict" and not op.deleted else []
    if op.status == "ok" and op.deleted == 0:
        return []
    return _conditional(op, state, idx.matches(op.expected, state), None)


def _conditional(op: Op, state: State, match: bool | None, applied: State) -> list[State]:
    if op.status == "ok":
        return [applied] if match is not False else []
    if op.status == "conflict":
        return [state] if match is not True else []
    # unknown: whatever the condition says, or both when it cannot be told
    if match is None:
        return [applied, state]
    return [applied] if match else [state]


# ----------------------------------------------------------------------------- preprocessing


def _indexes(ops: list[Op]) -> tuple[Indexes, str]:
    of_value: dict[str, int] = {}
    value_at: dict[int, str] = {}
    for op in ops:
        if op.status != "ok" or op.index is None or op.value is None:
            continue
        if of_value.setdefault(op.value, op.index) != op.index:
            return Indexes(of_value, value_at), (
                f"value {op.value!r} seen with modify_index {of_value[op.value]} and {op.index} "
                f"(op {op.id})"
            )
        if value_at.setdefault(op.index, op.value) != op.value:
            return Indexes(of_value, value_at), (
                f"modify_index {op.index} seen holding {value_at[op.index]!r} and {op.value!r} "
                f"(op {op.id})"
            )
    return Indexes(of_value, value_at), ""


def prepare(ops: Iterable[Op]) -> tuple[list[Op], Indexes, str]:
    """Drop what carries no information, bound observed unknown writes; or name a violation."""
    kept = [
        op
        for op in ops
        if op.status != "fail" and not (op.kind == "read" and op.status != "ok")
    ]
    writers: dict[str, Op] = {}
    for op in kept:
        if op.kind in ("write", "cas") and op.value is not None:
            if op.value in writers:
                raise HistoryError(f"value {op.value!r} is written by ops {writers[op.value].id} "
                                   f"and {op.id}: the model needs unique values")
            writers[op.value] = op
    idx, clash = _indexes(kept)
    if clash:
        return kept, idx, clash
    first_seen: dict[str, int] = {}
    for op in kept:
        if op.kind != "read" or op.value is None:
            continue
        writer = writers.get(op.value)
        if writer is None:
            return kept, idx, f"op {op.id} read {op.value!r}, which no operation wrote"
        if writer.status == "conflict":
            return kept, idx, f"op {op.id} read {op.value!r}, whose CAS was refused (409)"
        assert op.ret is not None
        first_seen[op.value] = min(first_seen.get(op.value, INFINITY), op.ret)
    out = []
    for op in kept:
        if op.status == "unknown" and op.value in first_seen:
            op = replace(op, ret=first_seen[op.value])
        elif op.status == "unknown":
            op = replace(op, ret=None)
        out.append(op)
    return out, idx, ""


# ------------------------------------------------------------------------------- the search


class _Entry:
    """A node of the doubly linked list of call/return events."""

    __slots__ = ("is_call", "match", "next", "op", "pos", "prev")

    def __init__(self, op: Op, pos: int, is_call: bool) -> None:
        self.op = op
        self.pos = pos  # the op's bit in the linearized set
        self.is_call = is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: list[Op]) -> _Entry:
    events: list[tuple[int, int, _Entry]] = []
    for pos, op in enumerate(ops):
        call = _Entry(op, pos, True)
        events.append((op.call, 0, call))  # calls sort before returns at equal times (lenient)
        if op.ret is not None:
            ret = _Entry(op, pos, False)
            call.match = ret
            events.append((op.ret, 1, ret))
    events.sort(key=lambda e: (e[0], e[1]))
    head = _Entry(ops[0] if ops else Op(-1, "", "", "read", "ok", 0, 0), -1, False)
    prev = head
    for _, _, entry in events:
        prev.next, entry.prev = entry, prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    assert entry.prev is not None
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    ret = entry.match
    if ret is not None:
        assert ret.prev is not None
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev


def _unlift(entry: _Entry) -> None:
    ret = entry.match
    if ret is not None:
        assert ret.prev is not None
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
    assert entry.prev is not None
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


@dataclass
class _Unknowns:
    """Unknown operations nobody observed, in interchangeable classes (same kind and expected
    index). Such an operation may apply at any point after its call, or never; so whichever
    member of a class applied, the ones left can still apply anywhere the frontier of the
    search has reached. A configuration therefore only needs *how many* of each class applied,
    not which: that, and not a bit per operation, goes into the cache key. Fewer applied is never
    worse (the ones left may still apply or not), so a configuration is skipped when one with
    the same linearized operations and state but no more applied in any class was explored.
    A class whose expected index names a value that was overwritten for good can never apply
    again: it is dead, and how many of it applied stops mattering."""

    class_of: dict[int, int]  # op position -> class
    owner: list[int | None]  # per class: position of the op writing the expected value
    owner_value: list[State]

    @classmethod
    def of(cls, ops: list[Op], idx: Indexes) -> _Unknowns:
        classes: dict[tuple[str, int | None], int] = {}
        writer_pos = {op.value: pos for pos, op in enumerate(ops)
                      if op.kind in ("write", "cas") and op.value is not None}
        out = cls({}, [], [])
        for pos, op in enumerate(ops):
            if op.ret is not None:
                continue
            name = (op.kind, op.expected)
            if name not in classes:
                classes[name] = len(out.owner)
                value = idx.value_at.get(op.expected) if op.expected else None
                out.owner.append(writer_pos.get(value) if value is not None else None)
                out.owner_value.append(value)
            out.class_of[pos] = classes[name]
        return out

    def key(self, counts: list[int], linearized: int, state: State) -> tuple[int, ...]:
        return tuple(
            -1 if owner is not None and linearized >> owner & 1 and state != value else n
            for n, owner, value in zip(counts, self.owner, self.owner_value, strict=True)
        )


def _candidates(
    head: _Entry, state: State, idx: Indexes, unknowns: _Unknowns, unseen: set[str]
) -> list[tuple[_Entry, State]]:
    """Operations that may go next (call before the first pending return), definite ones first.

    Of each class of unobserved unknown operations only the latest-called is tried, and only
    where it changes the state (applying one without effect is never better than keeping it),
    and only when some definite operation in the window cannot go next from this state. Why that
    is enough: if the definite operation D that follows an unknown U in a linearization could
    also go before U, then either D overwrites the register (drop U, which nobody saw) or D
    leaves it alone (a refused CAS: swap U after D); a read D legal both before and after U
    means U changed nothing. So an unknown operation is only ever needed right before (a chain
    of unknowns before) a definite operation that is illegal in the current state.
    """
    found: list[tuple[_Entry, State]] = []
    latest: dict[int, _Entry] = {}
    blocked = False
    entry = head.next
    while entry is not None and entry.is_call:
        if entry.match is not None:
            afters = step(entry.op, state, idx)
            blocked = blocked or not afters
            found.extend((entry, after) for after in afters)
        else:
            latest[unknowns.class_of[entry.pos]] = entry
        entry = entry.next
    if not blocked:
        return found
    for entry in latest.values():
        for after in step(entry.op, state, idx):
            after = UNSEEN if after in unseen else after
            if after != state:
                found.append((entry, after))
    return found


class _Cache:
    """Configurations explored: per (linearized set, state), the minimal unknown-class counts."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, State], list[tuple[int, ...]]] = {}
        self.size = 0

    def visit(self, bits: int, state: State, counts: tuple[int, ...]) -> bool:
        """Record a configuration; False if it (or one that dominates it) was seen already."""
        explored = self.seen.setdefault((bits, state), [])
        for old in explored:
            if all(o <= n for o, n in zip(old, counts, strict=True)):
                return False
        explored.append(counts)
        self.size += 1
        return True


Frame = tuple[list[tuple[_Entry, State]], int, _Entry, State]


def check_key(
    key: str, ops: Iterable[Op], budget_seconds: float = 60.0, max_configs: int = 5_000_000
) -> Result:
    """Is this key's history linearizable? (``ok`` None when the budget ran out.)"""
    started = time.monotonic()
    try:
        prepared, idx, clash = prepare(ops)
    except HistoryError as exc:
        return Result(key, False, f"malformed history: {exc}")
    result = Result(key, True, ops=len(prepared))
    if clash:
        result.ok, result.reason = False, clash
        return result
    prepared.sort(key=lambda op: op.call)
    if not prepared:
        return result
    head = _build_list(prepared)
    unknowns = _Unknowns.of(prepared, idx)
    unseen = {op.value for op in prepared if op.ret is None and op.value is not None}
    counts = [0] * len(unknowns.owner)
    state: State = None
    linearized = 0  # bits of the definite operations linearized
    cache = _Cache()
    cache.visit(0, None, unknowns.key(counts, 0, None))
    # Each frame: the candidates of a configuration and the next one to try, the entry it
    # linearized (to undo) and the state before it.
    frames: list[Frame] = []
    cands = _candidates(head, state, idx, unknowns, unseen)
    i = 0
    remaining = total = sum(1 for op in prepared if op.ret is not None)
    deepest = -1
    while remaining:
        advanced = False
        while i < len(cands):
            entry, after = cands[i]
            i += 1
            definite = entry.match is not None
            bits = linearized | (1 << entry.pos) if definite else linearized
            if not definite:
                counts[unknowns.class_of[entry.pos]] += 1
            if not cache.visit(bits, after, unknowns.key(counts, bits, after)):
                if not definite:
                    counts[unknowns.class_of[entry.pos]] -= 1
                continue
            frames.append((cands, i, entry, state))
            linearized, state = bits, after
            _lift(entry)
            remaining -= definite
            cands, i = _candidates(head, state, idx, unknowns, unseen), 0
            advanced = True
            break
        if advanced:
            if cache.size > max_configs or time.monotonic() - started > budget_seconds:
                result.ok, result.reason = None, f"gave up after {cache.size} configurations"
                break
            continue
        done = total - remaining
        if done > deepest:  # remember the deepest dead end for the report
            deepest = done
            result.linearized = [e.op.id for _, _, e, _ in frames]
            result.stuck_state = state
            result.stuck_ops = _window_ids(head)
        if not frames:
            result.ok = False
            result.reason = _explain(result, prepared)
            break
        cands, i, undo, state = frames.pop()
        _unlift(undo)
        if undo.match is not None:
            linearized &= ~(1 << undo.pos)
            remaining += 1
        else:
            counts[unknowns.class_of[undo.pos]] -= 1
    result.explored = cache.size
    result.seconds = time.monotonic() - started
    if result.ok:
        result.linearized, result.stuck_ops = [], []
    return result


def _window_ids(head: _Entry) -> list[int]:
    ids = []
    entry = head.next
    while entry is not None and entry.is_call:
        if entry.match is not None:  # unknown ones can always wait: not worth listing
            ids.append(entry.op.id)
        entry = entry.next
    if entry is not None and entry.op.id not in ids:
        ids.append(entry.op.id)  # the operation whose response closes the window
    return ids


def _explain(result: Result, ops: list[Op]) -> str:
    by_id = {op.id: op for op in ops}
    stuck = ", ".join(
        f"op {i} ({by_id[i].describe()})" for i in result.stuck_ops if i in by_id
    )
    return (
        f"not linearizable: after {len(result.linearized)} operations the register holds "
        f"{_show(result.stuck_state)} and none of these can go next: {stuck}"
    )


def _show(state: State) -> str:
    return "a value no read returned (unknown write)" if state == UNSEEN else repr(state)


# ---------------------------------------------------------------------------------- histories


def by_key(ops: Iterable[Op]) -> dict[str, list[Op]]:
    keys: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        keys[op.key].append(op)
    return dict(keys)


def check(ops: Iterable[Op], budget_seconds: float = 60.0) -> list[Result]:
    """Check every key of a history (P-compositionality)."""
    return [check_key(k, v, budget_seconds) for k, v in sorted(by_key(ops).items())]


def minimise(ops: list[Op], budget_seconds: float = 60.0) -> list[Op]:
    """A smaller history of one key that still is not linearizable, and says no more than the
    original did: reads and refused operations are dropped (they change nothing), acknowledged
    writes and deletes are weakened to unknown outcomes (which only allows more orders). Greedy,
    in chunks halving down to one; each candidate gets a small search budget, and an undecided
    one counts as not violating."""
    deadline = time.monotonic() + budget_seconds

    def violates(candidate: list[Op]) -> bool:
        left = deadline - time.monotonic()
        return left > 0 and check_key("", candidate, budget_seconds=min(5.0, left)).ok is False

    def weaker(current: list[Op], chunk: list[Op]) -> list[Op]:
        ids = {op.id for op in chunk}
        out = []
        for op in current:
            if op.id not in ids or op.status == "unknown":
                out.append(op)
            elif op.kind in MUTATIONS and op.status == "ok":
                out.append(replace(op, status="unknown", ret=None, index=None, deleted=None))
        return out

    current = sorted(ops, key=lambda op: op.call)
    if not violates(current):
        return current
    size = max(1, len(current) // 2)
    while size >= 1 and time.monotonic() < deadline:
        start = 0
        while start < len(current) and time.monotonic() < deadline:
            candidate = weaker(current, current[start:start + size])
            if candidate != current and violates(candidate):
                current = candidate
            else:
                start += size
        size //= 2
    return current


def lost_acked_write(ops: Iterable[Op], final_process: str = "final") -> str:
    """The direct check for lost acknowledged writes on one key ('' when none is lost).

    The last acknowledged mutation in any linearization is one that no other acknowledged
    mutation started after; after it only operations with unknown outcomes can change the key.
    So the final reads must return what one of those left behind.
    """
    ops = list(ops)
    mutations = [op for op in ops if op.kind in MUTATIONS and op.status in ("ok", "unknown")]
    acked = [op for op in mutations if op.status == "ok"]
    allowed: set[State] = set()
    for op in acked:
        assert op.ret is not None
        if not any(other.call > op.ret for other in acked):
            allowed.add(op.value if op.kind != "delete" else None)
    for op in mutations:
        if op.status == "unknown":
            allowed.add(op.value if op.kind != "delete" else None)
    if not acked:
        allowed.add(None)
    finals = [op for op in ops if op.process == final_process and op.kind == "read"]
    for op in finals:
        if op.status == "ok" and op.value not in allowed:
            last = sorted(repr(v) for v in allowed)
            return (f"final read (op {op.id}, {op.node}) returned {op.value!r}; the last "
                    f"acknowledged writes left one of {', '.join(last)}")
    return ""


def save(ops: Iterable[Op], path: Path) -> None:
    with path.open("w") as f:
        for op in ops:
            f.write(json.dumps(asdict(op)) + "\n")


def load(path: Path) -> list[Op]:
    return [Op(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def dump(ops: Iterable[Op], result: Result | None = None,
         events: Iterable[tuple[int, str]] = (), hide_unknown: bool = False) -> Iterator[str]:
    """A readable listing: one line per operation in call order, nemesis events interleaved.
    ``hide_unknown`` leaves out operations with unknown outcomes (counted at the end)."""
    ops = sorted(ops, key=lambda op: op.call)
    if not ops:
        return
    hidden = [op for op in ops if hide_unknown and op.status == "unknown"]
    ops = [op for op in ops if not (hide_unknown and op.status == "unknown")] or ops
    t0 = ops[0].call
    marks = set(result.stuck_ops) if result else set()
    done = set(result.linearized) if result else set()
    rows: list[tuple[int, str]] = []
    for op in ops:
        end = "      ?" if op.ret is None else f"{(op.ret - t0) / 1e6:9.1f}"
        flag = "!!" if op.id in marks else ("  " if op.id in done or not result else " .")
        rows.append((op.call, f"{flag} {(op.call - t0) / 1e6:9.1f} {end}  #{op.id:<6} "
                              f"{op.process:<7} {op.node:<15} {op.status:<8} {op.describe()}"))
    last = max(op.ret or op.call for op in ops)
    for at, what in events:  # those around the operations shown (a second either side)
        if t0 - 1_000_000_000 <= at <= last + 1_000_000_000:
            rows.append((at, f"** {(at - t0) / 1e6:9.1f}            nemesis: {what}"))
    rows.sort(key=lambda r: r[0])
    yield "   call(ms)   ret(ms)  op      client  node            outcome  operation"
    for _, line in rows:
        yield line
    if hidden:
        yield f"(and {len(hidden)} operations with unknown outcomes, not listed)"
    if result is not None and result.ok is False:
        yield ""
        yield f"verdict: {result.reason}"
        yield "(!! = the operations the deepest attempt could not linearize; . = not linearized)"
