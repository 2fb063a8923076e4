"""Whatever arrives, in whatever order, the core keeps its invariants and never crashes."""

from __future__ import annotations

import random

from konsul.raft.core import NotLeaderError, ProposalRejected, RaftCore, RaftSafetyError, Role
from konsul.raft.messages import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    Message,
    PreVote,
    PreVoteResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from konsul.raft.types import HardState, SnapshotMeta
from tests.raft.core_harness import FAST, MemSnapshots, cmd, config_entry, config_of

PEERS = ["b", "c", "d", "zz"]  # zz is no member


def random_message(rng: random.Random, core: RaftCore) -> Message:
    src = rng.choice(PEERS)
    term = max(0, core.term + rng.randint(-2, 2))
    n = rng.randint(0, core.last_index + 3)
    t = rng.randint(0, term)
    kind = rng.randrange(11)
    if kind == 0:
        return PreVote(src, "a", term, n, t)
    if kind == 1:
        return PreVoteResponse(src, "a", term, rng.random() < 0.7)
    if kind == 2:
        return RequestVote(src, "a", term, n, t, rng.random() < 0.2)
    if kind == 3:
        return VoteResponse(src, "a", term, rng.random() < 0.7)
    if kind == 4:
        # arbitrary, but never contradicting what this node holds as committed (that is what
        # only a broken leader does, and RaftSafetyError is the answer to it)
        def known(i: int) -> int | None:
            return core.term_at(i) if i <= core.commit_index else None

        t = known(n) if known(n) is not None else t  # type: ignore[assignment]
        entries = []
        et = t
        for i in range(n + 1, n + 1 + rng.randint(0, 4)):
            k = known(i)
            et = k if k is not None else rng.randint(et, max(et, term))
            entries.append(cmd(i, et))
        commit = rng.randint(0, n + 4)
        return AppendEntries(src, "a", term, n, t, tuple(entries), commit, rng.randint(0, 5))
    if kind == 5:
        return AppendResponse(src, "a", term, rng.random() < 0.5, n, n, rng.randint(0, n), t,
                              rng.randint(0, 5))
    if kind == 6:
        meta = SnapshotMeta(n, t, config_of("a", "b", "c", "d"))
        return InstallSnapshot(src, "a", term, meta, rng.choice([0, 0, 4, 8]), b"12345678",
                               rng.random() < 0.5)
    if kind == 7:
        return SnapshotResponse(src, "a", term, n, rng.randint(0, 20), rng.random() < 0.5)
    if kind == 8:
        return TimeoutNow(src, "a", term)
    if kind == 9:
        return ReadIndexRequest(src, "a", term, rng.randint(0, 9))
    return ReadIndexResponse(src, "a", term, rng.randint(0, 9), n)


def test_random_inputs_never_crash_the_core_or_break_its_invariants() -> None:
    safety_stops = 0
    roles: set[Role] = set()
    for seed in range(150):
        rng = random.Random(seed)
        snaps = MemSnapshots()
        core = RaftCore("a", FAST, random.Random(seed), snaps, hard_state=HardState(1),
                        entries=[config_entry(1, 1, config_of("a", "b", "c", "d"))])
        core.ready()
        last_term = core.term
        applied = 0
        for _ in range(300):
            r = rng.random()
            try:
                if r < 0.55:
                    core.step(random_message(rng, core))
                elif r < 0.8:
                    core.tick()
                elif r < 0.9:
                    core.propose(b"p")
                elif r < 0.95:
                    core.read_index(rng.randint(0, 9))
                else:
                    core.transfer_leadership(None)
            except (NotLeaderError, ProposalRejected):
                pass
            except RaftSafetyError:
                safety_stops += 1  # the inputs never contradict its committed entries
                break
            assert core.term >= last_term
            last_term = core.term
            assert core.commit_index <= core.last_index
            assert (core.role is Role.LEADER) == (core.leader_id == "a")
            roles.add(core.role)
            while core.has_ready():
                rd = core.ready()
                if rd.truncate_from is not None:  # never below what was handed out as committed
                    assert rd.truncate_from > applied or rd.snapshot is not None
                if rd.snapshot is not None:
                    applied = rd.snapshot.meta.index
                if rd.committed:
                    assert rd.committed[0].index == applied + 1
                    applied = rd.committed[-1].index
                if rd.entries:
                    core.persisted(rd.entries[-1].index, rd.entries[-1].term)
                for m in rd.messages:
                    assert m.src == "a" and m.dst != "a"
    assert safety_stops == 0
    assert roles == set(Role)  # and visit every role
