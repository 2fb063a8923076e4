"""Linearizable reads by ReadIndex (etcd-io/raft's ``read_only.go``): the queues, not the rules.

A leader answers a read with its commit index once (1) it has committed an entry of its term
(before that its commit index may lag what earlier leaders committed) and (2) a majority has
echoed a heartbeat sent after the read arrived (so no newer leader had been elected when the
read arrived). Reads wait in three places, in this order:

    waiting_commit  arrived before the leader's first commit in its term
    unsent          waiting for the next heartbeat round (one round serves every read of a Ready)
    pending         (round, read index, src, ctx) sent in round ``round``, waiting for echoes

A follower forwards its reads to the leader and keeps a deadline for each (``ForwardedReads``).
"""

from __future__ import annotations

from collections import deque

__all__ = ["ForwardedReads", "ReadIndexQueue"]

Read = tuple[str, int]  # (the node that asked: the leader itself or a follower, ctx)


class ReadIndexQueue:
    """A leader's reads that are not answered yet."""

    __slots__ = ("pending", "round", "unsent", "waiting_commit")

    def __init__(self) -> None:
        self.round = 0  # the latest heartbeat round; every AppendEntries carries it
        self.waiting_commit: list[Read] = []
        self.unsent: list[Read] = []
        self.pending: deque[tuple[int, int, str, int]] = deque()  # round, index, src, ctx

    def start_round(self, commit: int) -> None:
        """The unsent reads go out with a new heartbeat round, at read index ``commit``."""
        self.round += 1
        r = self.round
        for src, ctx in self.unsent:
            self.pending.append((r, commit, src, ctx))
        self.unsent = []

    def confirmed(self, round_: int) -> list[tuple[str, int, int]]:
        """(src, ctx, read index) of the pending reads a majority echo of ``round_`` confirms."""
        done = []
        pending = self.pending
        while pending and pending[0][0] <= round_:
            _round, index, src, ctx = pending.popleft()
            done.append((src, ctx, index))
        return done

    def take_waiting_commit(self) -> list[Read]:
        waiting, self.waiting_commit = self.waiting_commit, []
        return waiting

    def drain(self) -> list[Read]:
        """Every read not answered (leadership is lost: they are all refused)."""
        reads = [(src, ctx) for _round, _index, src, ctx in self.pending]
        reads += self.unsent
        reads += self.waiting_commit
        self.pending.clear()
        self.unsent = []
        self.waiting_commit = []
        return reads


class ForwardedReads:
    """A follower's reads forwarded to its leader: ctx -> tick after which we give up."""

    __slots__ = ("deadlines",)

    def __init__(self) -> None:
        self.deadlines: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self.deadlines)

    def add(self, ctx: int, deadline: int) -> None:
        self.deadlines[ctx] = deadline

    def answered(self, ctx: int) -> bool:
        """The leader answered ``ctx``: False if we had given up on it (or never asked)."""
        return self.deadlines.pop(ctx, None) is not None

    def expire(self, now: int) -> list[int]:
        """The reads past their deadline (deadlines follow insertion order)."""
        reads = self.deadlines
        expired = []
        while reads:
            ctx, deadline = next(iter(reads.items()))
            if deadline > now:
                break
            del reads[ctx]
            expired.append(ctx)
        return expired

    def drop_all(self) -> list[int]:
        dropped = list(self.deadlines)
        self.deadlines.clear()
        return dropped
