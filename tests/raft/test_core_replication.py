"""Replication: batching, pipelining, probing after a refusal, fast backtracking, lost messages."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from konsul.raft.core import NotLeaderError, Role
from konsul.raft.messages import AppendEntries, AppendResponse, Message
from tests.raft.core_harness import FAST, Cluster, node_with


def appends_to(c: Cluster, dst: str) -> list[AppendEntries]:
    return [m for m in c.take(lambda m: isinstance(m, AppendEntries) and m.dst == dst)
            if isinstance(m, AppendEntries)]


def test_entries_are_batched_and_pipelined_within_the_limits() -> None:
    c = Cluster("abc")
    c.elect("a")
    for i in range(10):
        c["a"].propose(b"%d" % i)
    batch = appends_to(c, "b")
    # max_append_entries=4, max_inflight=2: two full batches leave before any answer
    assert [len(m.entries) for m in batch] == [4, 4]
    assert batch[1].prev_index == batch[0].entries[-1].index
    c.deliver(lambda m: m.dst != "b")  # c answers; b's batches are gone for now
    c.deliver()
    assert c["a"].commit_index == c["a"].last_index


def test_one_batch_per_ready_for_many_proposals() -> None:
    c = Cluster("abc", replace(FAST, max_append_entries=64, max_inflight=8))
    c.elect("a")
    for i in range(50):
        c["a"].propose(b"%d" % i)
    batch = appends_to(c, "b")
    assert [len(m.entries) for m in batch] == [50]


def test_a_rejection_falls_back_to_one_probe_at_a_time() -> None:
    c = Cluster("abc")
    c.elect("a")
    for i in range(4):
        c["a"].propose(b"x%d" % i)
    lost = appends_to(c, "b")  # the first batch to b is lost
    assert len(lost) == 1
    for i in range(4):
        c["a"].propose(b"y%d" % i)
    second = appends_to(c, "b")
    assert len(second) == 1 and second[0].prev_index == lost[0].entries[-1].index
    c.nodes["b"].core.step(second[0])  # b has a gap: it refuses
    refusal = [m for m in c.nodes["b"].handle_ready() if isinstance(m, AppendResponse)]
    assert not refusal[0].success
    c["a"].step(refusal[0])
    c.pump()
    for i in range(8):
        c["a"].propose(b"z%d" % i)
    probes = appends_to(c, "b")
    assert len(probes) == 1  # probing: one in flight, whatever is pending
    assert probes[0].prev_index == lost[0].prev_index
    c.net.extend(probes)
    c.deliver()
    c.tick(2 * FAST.commit_ticks)
    assert c.nodes["b"].disk.log == c.nodes["a"].disk.log


def test_backtracking_skips_a_whole_term_per_round_trip() -> None:
    a = node_with("a", [1] * 5 + [4] * 10, term=4)
    b = node_with("b", [1] * 5 + [2] * 30 + [3] * 30, term=4)
    cc = node_with("c", [1] * 5 + [4] * 10, term=4)
    c = Cluster("abc", nodes={"a": a, "b": b, "c": cc})
    refusals = 0

    def count(m: Message) -> bool:
        nonlocal refusals
        refusals += isinstance(m, AppendResponse) and m.src == "b" and not m.success
        return True

    c.elect("a")
    c.deliver(count)
    c.tick(2 * FAST.commit_ticks)
    c.deliver(count)
    assert b.disk.log == a.disk.log
    assert refusals <= 2  # not one per divergent entry (60)


def test_the_lost_tail_of_a_pipeline_is_sent_again() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].propose(b"x")
    assert len(appends_to(c, "b")) == 1  # lost, and nothing follows it
    c.deliver()
    for _ in range(FAST.heartbeat_timeout_ticks):
        c.tick(1)
        if c.nodes["b"].commands() == [b"x"]:
            break
    assert c.nodes["b"].commands() == [b"x"]


def test_leader_counts_its_own_entry_only_once_persisted() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.crash("c")
    c.nodes["a"].auto_persist = False
    index, _ = c["a"].propose(b"x")
    c.deliver()
    assert c["a"].match_index("b") == index
    assert c["a"].commit_index < index  # b alone is no majority; a's copy is not durable yet
    c.nodes["a"].ack_persisted()
    assert c["a"].commit_index == index


def test_a_majority_of_followers_commits_without_the_leaders_fsync() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.nodes["a"].auto_persist = False
    index, _ = c["a"].propose(b"x")
    c.deliver()
    assert c["a"].commit_index == index
    assert c.nodes["a"].commands() == []  # but the leader applies only what it persisted
    c.nodes["a"].ack_persisted()
    c.pump()
    assert c.nodes["a"].commands() == [b"x"]


def test_lossy_duplicating_reordering_network_keeps_logs_consistent() -> None:
    """A small randomized run (the simulator does this at scale): safety and catch-up."""
    for seed in range(12):
        rng = random.Random(seed)
        c = Cluster("abcde", seed=seed)
        written = 0
        for step in range(400):
            for n in c.nodes.values():
                n.core.tick()
            c.pump()
            if step < 300:
                batch = [m for m in c.net if rng.random() > 0.2]  # 20% lost
                batch += [m for m in batch if rng.random() < 0.1]  # 10% duplicated
                rng.shuffle(batch)
            else:
                batch = list(c.net)  # then a quiet network: everyone must catch up
            c.net = []
            for m in batch:
                c[m.dst].step(m)
                c.pump()
            leader = c.leader()
            if leader is not None and step < 300 and rng.random() < 0.3:
                c[leader].propose(b"w%d" % written)
                written += 1
            _check_prefixes(c)
        leader = c.leader()
        assert leader is not None, seed
        assert all(c[i].commit_index == c[leader].commit_index for i in c.nodes), seed
        assert written > 0


def _check_prefixes(c: Cluster) -> None:
    applied = sorted((n.applied for n in c.nodes.values()), key=len)
    longest = applied[-1]
    for a in applied:
        assert a == longest[: len(a)], "applied logs diverge"
    terms = [n.core.term for n in c.nodes.values() if n.core.role is Role.LEADER]
    assert len(terms) == len(set(terms)), "two leaders in one term"


def test_propose_many_appends_consecutive_commands() -> None:
    c = Cluster("abc")
    c.elect("a")
    first, term = c["a"].propose_many([b"p", b"q", b"r"])
    assert (first + 2, term) == (c["a"].last_index, c["a"].term)
    c.deliver()
    c.tick(FAST.commit_ticks)
    assert c.nodes["c"].commands() == [b"p", b"q", b"r"]
    with pytest.raises(NotLeaderError):
        c["b"].propose_many([b"x"])


def test_proposals_to_a_follower_name_the_leader() -> None:
    c = Cluster("abc")
    c.elect("a")
    with pytest.raises(NotLeaderError) as err:
        c["b"].propose(b"x")
    assert err.value.leader_id == "a"
    with pytest.raises(NotLeaderError):
        c["b"].match_index("a")


def test_an_unreachable_follower_is_probed_instead_of_pipelined_into() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].peer_unreachable("b")
    for i in range(12):
        c["a"].propose(b"%d" % i)
    to_b = appends_to(c, "b")
    assert len(to_b) == 1  # one probe, not max_inflight batches into a dead connection
    c.net.extend(to_b)
    c.deliver()
    c.tick(3 * FAST.commit_ticks)
    assert c.nodes["b"].commands() == [b"%d" % i for i in range(12)]
