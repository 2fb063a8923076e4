"""Raft's safety properties, checked incrementally as the simulation runs.

Every check costs O(what just happened) — the entries just written, the entry just applied —
except leader completeness, which walks the committed suffix a new leader must hold once per
election. The checker sees only what the runtime sees (Ready contents, messages, the core's
public properties) plus the clients' acknowledgements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from konsul.raft.types import Entry, EntryKind


class Violation(Exception):
    """A safety or liveness property failed; `invariant` names which."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass(slots=True)
class Ack:
    write_id: int
    index: int
    term: int
    node: str
    tick: int


class Checker:
    __slots__ = (
        "_applied_digest",
        "_applied_log",
        "_entry_links",
        "_leaders",
        "_votes",
        "acked",
        "acked_max_index",
        "elections",
        "reads_checked",
    )

    def __init__(self) -> None:
        self._leaders: dict[int, str] = {}
        self._votes: dict[tuple[int, str], str] = {}
        # What was applied at each index (index 0 is a placeholder), and the hash chain there.
        self._applied_log: list[tuple[int, int, bytes] | None] = [None]
        self._applied_digest: list[int] = [0]
        # (index, term) -> (term of the previous entry, kind, data): Log Matching by induction.
        self._entry_links: dict[tuple[int, int], tuple[int | None, int, bytes]] = {}
        self.acked: dict[int, Ack] = {}
        self.acked_max_index = 0
        self.elections = 0
        self.reads_checked = 0

    # ---------------------------------------------------------------- election safety

    def observe_leader(self, node: str, term: int) -> bool:
        """A node is leader in `term`. Returns True the first time this (term, node) is seen."""
        holder = self._leaders.get(term)
        if holder is None:
            self._leaders[term] = node
            self.elections += 1
            return True
        if holder != node:
            raise Violation(
                "election-safety", f"two leaders in term {term}: {holder} and {node}"
            )
        return False

    def vote_granted(self, voter: str, term: int, candidate: str) -> None:
        key = (term, voter)
        previous = self._votes.get(key)
        if previous is None:
            self._votes[key] = candidate
        elif previous != candidate:
            raise Violation(
                "one-vote-per-term",
                f"{voter} granted its term-{term} vote to {previous} and then to {candidate}",
            )

    # ---------------------------------------------------------------- log matching

    def entries_written(
        self, node: str, prev_term: int | None, entries: list[Entry]
    ) -> None:
        """`entries` were appended after an entry of term `prev_term` (None: unknown, i.e.
        right after a snapshot whose term the image does not hold)."""
        links = self._entry_links
        prev = prev_term
        for e in entries:
            key = (e.index, e.term)
            link = (prev, int(e.kind), e.data)
            known = links.get(key)
            if known is None:
                links[key] = link
            elif known != link:
                if known[1:] != link[1:]:
                    raise Violation(
                        "log-matching",
                        f"{node} holds entry {e.index}@{e.term} = {_show(e.kind, e.data)}, "
                        f"another node holds {e.index}@{e.term} = "
                        f"{_show(EntryKind(known[1]), known[2])}",
                    )
                if known[0] is not None and prev is not None:
                    raise Violation(
                        "log-matching",
                        f"{node} holds {e.index}@{e.term} after an entry of term {prev}, "
                        f"another node holds it after an entry of term {known[0]}",
                    )
            prev = e.term

    # ---------------------------------------------------------------- state machine safety

    def applied(self, node: str, entry: Entry, digest: int) -> None:
        log = self._applied_log
        i = entry.index
        if i < len(log):
            known = log[i]
            if known is not None and (known[0], known[1], known[2]) != (
                entry.term, int(entry.kind), entry.data
            ):
                raise Violation(
                    "state-machine-safety",
                    f"{node} applied {i}@{entry.term} = {_show(entry.kind, entry.data)} where "
                    f"another node applied {i}@{known[0]} = {_show(EntryKind(known[1]), known[2])}",
                )
            if known is None:  # a gap left by a snapshot: first seen applied now
                log[i] = (entry.term, int(entry.kind), entry.data)
                if self._applied_digest[i] == -1:
                    self._applied_digest[i] = digest
            if self._applied_digest[i] != digest:
                raise Violation(
                    "state-machine-safety",
                    f"{node}'s state after applying {i} differs from another node's "
                    "(an earlier entry was skipped or applied twice)",
                )
            return
        if i != len(log):
            # The first node to reach i skipped some index: only possible if it restored a
            # snapshot past what anyone applied (then snapshot_restored filled the gap).
            while len(log) < i:
                log.append(None)
                self._applied_digest.append(-1)
        log.append((entry.term, int(entry.kind), entry.data))
        self._applied_digest.append(digest)

    def snapshot_restored(self, node: str, index: int, digest: int) -> None:
        if index < len(self._applied_digest):
            known = self._applied_digest[index]
            if known not in (-1, digest):
                raise Violation(
                    "state-machine-safety",
                    f"{node} restored a snapshot at {index} whose state differs from what "
                    "other nodes applied up to there",
                )
            return
        # A snapshot beyond anything applied: possible only if its author applied it, so
        # this cannot happen in a correct run, but keep the book-keeping consistent.
        while len(self._applied_digest) < index:
            self._applied_log.append(None)
            self._applied_digest.append(-1)
        self._applied_log.append(None)
        self._applied_digest.append(digest)

    @property
    def applied_max(self) -> int:
        return len(self._applied_log) - 1

    def applied_term(self, index: int) -> int | None:
        if index < len(self._applied_log):
            known = self._applied_log[index]
            return known[0] if known is not None else None
        return None

    def digest_at(self, index: int) -> int:
        return self._applied_digest[index] if index < len(self._applied_digest) else -1

    # ---------------------------------------------------------------- leader completeness

    def leader_complete(
        self,
        node: str,
        term: int,
        first_index: int,
        term_at: Callable[[int], int | None],
        snapshot_index: int,
        snapshot_digest: int | None,
    ) -> None:
        """A new leader's log must hold every entry applied (hence committed) anywhere.

        Entries below its log's first index are covered by its snapshot, whose state must be
        the applied state at that index (or be beyond what anyone applied)."""
        if snapshot_index and snapshot_digest is not None:
            digest = self.digest_at(snapshot_index)
            if digest not in (-1, snapshot_digest):
                raise Violation(
                    "leader-completeness",
                    f"{node} leads term {term} with a snapshot at {snapshot_index} that differs "
                    "from the committed state there",
                )
        log = self._applied_log
        for i in range(max(first_index, 1), len(log)):
            known = log[i]
            # Entries of this term or later were committed by this leader or a later one:
            # the property is about what earlier terms committed.
            if known is None or known[0] >= term:
                continue
            have = term_at(i)
            if have != known[0]:
                raise Violation(
                    "leader-completeness",
                    f"{node} became leader of term {term} without committed entry "
                    f"{i}@{known[0]} (its log has {'nothing' if have is None else f'term {have}'}"
                    " there)",
                )

    # ---------------------------------------------------------------- clients

    def acknowledged(self, ack: Ack) -> None:
        known = self.applied_term(ack.index)
        if known != ack.term:
            raise Violation(
                "acknowledged-write",
                f"write w{ack.write_id} acknowledged at {ack.index}@{ack.term} but the committed "
                f"entry there has term {known}",
            )
        self.acked[ack.write_id] = ack
        if ack.index > self.acked_max_index:
            self.acked_max_index = ack.index

    def read_index_given(self, node: str, ctx: int, read_index: int, required: int) -> None:
        """The core answered read `ctx` with `read_index`: every write acknowledged before the
        read began (the highest committed at index `required`) must be at or below it."""
        if read_index < required:
            raise Violation(
                "linearizable-read",
                f"{node} answered read {ctx} with read index {read_index} but a write "
                f"acknowledged before the read began committed at {required}",
            )

    def read_served(
        self, node: str, ctx: int, read_index: int, required: int, state_index: int
    ) -> None:
        """The runtime served read `ctx` from the state at `state_index`: it must include every
        write acknowledged before the read began."""
        self.reads_checked += 1
        if state_index < read_index or state_index < required:
            raise Violation(
                "linearizable-read",
                f"{node} served read {ctx} from the state at {state_index} (read index "
                f"{read_index}) but a write acknowledged before the read began committed at "
                f"{required}",
            )

    def durable_acks(self, node: str, term_at: Callable[[int], int | None], first: int) -> None:
        """At the end of a run: every acknowledged write is in the leader's log (or under its
        snapshot)."""
        for ack in self.acked.values():
            if ack.index >= first and term_at(ack.index) != ack.term:
                raise Violation(
                    "acknowledged-write-lost",
                    f"write w{ack.write_id} acknowledged at {ack.index}@{ack.term} is missing "
                    f"from the final leader {node}'s log",
                )


def _show(kind: EntryKind | int, data: bytes) -> str:
    kind = EntryKind(kind)
    if kind == EntryKind.COMMAND:
        return data.decode(errors="replace")
    if kind == EntryKind.NOOP:
        return "noop"
    return f"config({len(data)}B)"
