"""Elections beyond Figure 2: pre-vote, leader stickiness, check-quorum, empty nodes, standalone."""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack
import pytest

from konsul.raft.core import ProposalRejected, RaftCore, Role
from konsul.raft.messages import (
    AppendEntries,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    RequestVote,
    VoteResponse,
)
from konsul.raft.types import EntryKind, HardState, Member, SnapshotMeta
from tests.raft.core_harness import (
    FAST,
    Cluster,
    Disk,
    MemSnapshots,
    Node,
    config_entry,
    config_of,
    node_with,
    sent,
    single_node,
)

# ---------------------------------------------------------------- pre-vote


def test_isolated_node_pre_votes_without_bumping_its_term() -> None:
    b = node_with("b", [1], term=1)
    for _ in range(20 * FAST.heartbeat_timeout_ticks):
        b.core.tick()
    assert b.core.role is Role.PRE_CANDIDATE
    assert b.core.term == 1
    rd = b.core.ready()
    assert rd.hard_state is None
    assert rd.messages and all(isinstance(m, PreVote) and m.term == 2 for m in rd.messages)


def test_rejoining_node_does_not_disrupt_a_healthy_leader() -> None:
    c = Cluster("abc")
    c.elect("a")
    term = c["a"].term
    c.partition("ab", "c")
    c.tick(10 * FAST.heartbeat_timeout_ticks)
    assert c["c"].term == term  # pre-votes failed: no term inflation while cut off
    c.heal()
    c.tick(5 * FAST.heartbeat_timeout_ticks)
    assert c.leader() == "a"
    assert c["a"].term == term
    assert c["c"].role is Role.FOLLOWER and c["c"].leader_id == "a"


def test_without_pre_vote_a_rejoining_node_does_disrupt() -> None:
    # the control experiment for the test above: proves it measures what pre-vote prevents
    cfg = replace(FAST, pre_vote=False, check_quorum=False)
    c = Cluster("abc", cfg)
    c.elect("a")
    term = c["a"].term
    c.partition("ab", "c")
    c.tick(10 * FAST.heartbeat_timeout_ticks)
    assert c["c"].term > term + 3
    c.heal()
    c.tick(5 * FAST.heartbeat_timeout_ticks)
    assert c["a"].term > term


def test_pre_vote_is_refused_while_the_leader_is_heard() -> None:
    b = node_with("b", [1], term=2)
    b.core.step(AppendEntries("a", "b", 2, 1, 1, (), 0, 0))
    sent(b)
    for _ in range(FAST.heartbeat_timeout_ticks - 1):
        b.core.tick()
    b.core.step(PreVote("c", "b", 3, 1, 1))
    assert sent(b, PreVoteResponse) == [PreVoteResponse("b", "c", 2, False)]
    b.core.tick()  # now the leader has been silent for a whole heartbeat timeout
    b.core.step(PreVote("c", "b", 3, 1, 1))
    assert sent(b, PreVoteResponse) == [PreVoteResponse("b", "c", 3, True)]
    assert b.core.term == 2 and b.core.vote == "a"  # granting a pre-vote changes nothing


def test_pre_vote_is_granted_at_once_when_the_leader_is_reported_unreachable() -> None:
    b = node_with("b", [1], term=2)
    b.core.step(AppendEntries("a", "b", 2, 1, 1, (), 0, 0))
    sent(b)
    b.core.peer_unreachable("a")
    b.core.step(PreVote("c", "b", 3, 1, 1))
    assert sent(b, PreVoteResponse)[0].granted


def test_pre_vote_is_refused_to_a_stale_log() -> None:
    b = node_with("b", [1, 1, 2], term=2)
    b.core.step(PreVote("c", "b", 3, 2, 1))
    assert not sent(b, PreVoteResponse)[0].granted


def test_a_refused_pre_candidate_learns_the_newer_term() -> None:
    b = node_with("b", [1], term=1)
    while b.core.role is not Role.PRE_CANDIDATE:
        b.core.tick()
    b.core.step(PreVoteResponse("a", "b", 7, False))
    assert (b.core.role, b.core.term) == (Role.FOLLOWER, 7)


def test_a_crashed_leader_is_replaced_and_follows_when_it_returns() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].propose(b"x")
    c.deliver()
    c.crash("a")
    c.tick(4 * FAST.heartbeat_timeout_ticks)
    new = c.leader()
    assert new in ("b", "c")
    term = c[new].term
    c.recover("a")  # restarts from its disk, as a follower that missed the election
    c.tick(4 * FAST.heartbeat_timeout_ticks)
    assert c.leader() == new and c[new].term == term
    assert c["a"].leader_id == new
    assert c.nodes["a"].commands() == [b"x"]


def test_unreachable_leader_is_replaced_before_the_heartbeat_timeout() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.crash("a")
    c["b"].peer_unreachable("a")
    c["c"].peer_unreachable("a")
    ticks = 0
    while c.leader() is None:
        c.tick(1)
        ticks += 1
    assert c.leader() in ("b", "c")
    assert ticks < FAST.heartbeat_timeout_ticks


def test_followers_told_their_leader_is_gone_campaign_by_rank_not_together() -> None:
    """Both survivors hear of the crash at the same moment. b, first in id order, pre-votes a
    slot before c and has won by then: no two pre-candidates granting each other, whose split
    vote would cost an election timeout."""
    for seed in range(20):  # whatever the jitter
        c = Cluster("abc", seed=seed)
        c.elect("a")
        term = c["b"].term
        c.crash("a")
        c["b"].peer_unreachable("a")
        c["c"].peer_unreachable("a")
        for _ in range(FAST.heartbeat_timeout_ticks):
            c.tick(1)
            assert c["c"].role is Role.FOLLOWER, f"seed {seed}: c campaigned too"
            if c.leader() is not None:
                break
        assert (c.leader(), c["b"].term) == ("b", term + 1), f"seed {seed}"


def test_unreachable_non_leader_does_not_start_an_election() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["b"].peer_unreachable("c")
    before = c["b"]._randomized_timeout - c["b"]._election_elapsed
    assert before > FAST.heartbeat_timeout_ticks // 2
    c.tick(FAST.heartbeat_timeout_ticks // 2)
    assert c["b"].role is Role.FOLLOWER


def test_randomised_timeouts_come_from_the_callers_rng() -> None:
    def first_campaign_tick(seed: int) -> int:
        core = RaftCore("b", FAST, random.Random(seed), MemSnapshots(),
                        hard_state=HardState(1), entries=node_with("x").disk.log)
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        return ticks

    results = [first_campaign_tick(seed) for seed in range(30)]
    t = FAST.heartbeat_timeout_ticks
    assert all(t <= r < 2 * t for r in results)
    assert len(set(results)) > 3  # spread over the range
    assert results == [first_campaign_tick(seed) for seed in range(30)]  # and reproducible


# ---------------------------------------------------------------- stickiness and check-quorum


def test_a_vote_request_is_ignored_while_a_leader_is_heard() -> None:
    b = node_with("b", [1], term=2)
    b.core.step(AppendEntries("a", "b", 2, 1, 1, (), 0, 0))
    sent(b)
    b.core.step(RequestVote("c", "b", 3, 5, 2))  # no pre-vote behind it: ignore, keep the term
    assert sent(b) == []
    assert b.core.term == 2


def test_a_transfer_vote_request_overrides_the_lease() -> None:
    b = node_with("b", [1], term=2)
    b.core.step(AppendEntries("a", "b", 2, 1, 1, (), 0, 0))
    sent(b)
    b.core.step(RequestVote("c", "b", 3, 5, 2, transfer=True))
    assert sent(b, VoteResponse) == [VoteResponse("b", "c", 3, True)]


def test_leader_cut_off_from_the_majority_steps_down() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.partition("a", "bc")
    ticks = 0
    while c["a"].role is Role.LEADER and ticks < 5 * FAST.leader_lease_ticks:
        c.tick(1, only="a")
        ticks += 1
    assert c["a"].role is Role.FOLLOWER
    assert ticks <= FAST.leader_lease_ticks + 1  # one lease after the last answer
    a = c.nodes["a"]
    a.core.read_index(1)
    a.handle_ready()
    assert a.dropped_reads == [1]  # no leader known: the read cannot be served


def test_leader_with_a_majority_keeps_leading() -> None:
    c = Cluster("abcde")
    c.elect("a")
    c.partition("abc", "de")
    c.tick(10 * FAST.leader_lease_ticks)
    assert c.leader() == "a"


def test_without_check_quorum_a_cut_off_leader_stays() -> None:
    c = Cluster("abc", replace(FAST, check_quorum=False))
    c.elect("a")
    c.partition("a", "bc")
    c.tick(10 * FAST.leader_lease_ticks, only="a")
    assert c["a"].role is Role.LEADER


# ---------------------------------------------------------------- empty nodes


def test_an_empty_node_never_campaigns_and_ignores_votes() -> None:
    n = Node("d")
    assert n.core.is_empty
    for _ in range(10 * FAST.heartbeat_timeout_ticks):
        n.core.tick()
    assert n.core.role is Role.FOLLOWER and sent(n) == []
    n.core.step(RequestVote("a", "d", 5, 10, 3))
    n.core.step(PreVote("a", "d", 5, 10, 3))
    assert sent(n) == [] and n.core.term == 0 and n.core.vote is None


def test_a_member_whose_disk_was_wiped_cannot_vote_twice_in_a_term() -> None:
    c = Cluster("abc")
    c.elect("a")
    term = c["a"].term
    assert c["b"].vote == "a"
    # b loses its disk and restarts empty; c campaigns in a's term (as if it had missed it)
    c.nodes["b"] = Node("b", FAST, 0, Disk())
    c.nodes["b"].core.step(RequestVote("c", "b", term, 100, term))
    assert sent(c.nodes["b"]) == []
    # the leader brings b back: b writes no hard state while it catches up, so that it is
    # still catching up after a restart
    c.tick(2 * FAST.commit_ticks)
    assert c["b"].term == term
    assert c.nodes["b"].disk.hard_state == HardState() and c.nodes["b"].disk.log
    c.nodes["b"].restart()
    assert not c["b"].is_empty
    assert c["b"].configuration.voters() == ["a", "b", "c"]
    c.nodes["b"].core.step(RequestVote("c", "b", term, 100, term, transfer=True))
    assert [m.granted for m in sent(c.nodes["b"], VoteResponse)] == [False]


def test_an_empty_node_joins_when_the_leader_sends_it_the_log() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].propose(b"x")
    c.nodes["b"] = Node("b", FAST, 0, Disk())
    c.tick(4 * FAST.commit_ticks)
    assert c.nodes["b"].disk.log == c.nodes["a"].disk.log
    assert c.nodes["b"].commands() == [b"x"]


# ---------------------------------------------------------------- standalone


def test_bootstrap_makes_a_single_voter_leader_at_once() -> None:
    n = Node("a")
    n.core.bootstrap(Member("a", "a:7000"))
    assert n.core.role is Role.LEADER and n.core.term == 1
    n.handle_ready()
    assert [e.kind for e in n.applied] == [EntryKind.CONFIG, EntryKind.NOOP]
    assert n.core.committed_configuration.voters() == ["a"]


def test_bootstrap_is_refused_on_a_non_empty_node_or_for_another_member() -> None:
    n = single_node("a")
    with pytest.raises(ProposalRejected):
        n.core.bootstrap(Member("a", "a:7000"))
    with pytest.raises(ProposalRejected):
        Node("b").core.bootstrap(Member("a", "a:7000"))


def test_single_voter_restart_leads_at_once_and_replays_its_log() -> None:
    n = single_node("a")
    for i in range(5):
        n.core.propose(b"%d" % i)
    n.handle_ready()
    assert n.commands() == [b"0", b"1", b"2", b"3", b"4"]
    n.restart()
    assert n.core.role is Role.LEADER and n.core.term == 2
    n.handle_ready()
    assert n.commands() == [b"0", b"1", b"2", b"3", b"4"]  # re-applied from the log


def test_single_voter_commits_only_what_it_persisted() -> None:
    n = single_node("a")
    n.auto_persist = False
    index, _ = n.core.propose(b"x")
    n.handle_ready()
    assert n.core.commit_index < index and n.commands() == []
    n.ack_persisted()
    n.handle_ready()
    assert n.commands() == [b"x"]


def test_a_wiped_member_does_not_vote_after_catching_up_with_the_leaders_commit() -> None:
    # The wiped member may have acknowledged entries it no longer has, beyond anything the
    # first leader to call can tell it (its commit index lags; it may be stale): holding the
    # whole log of that leader is not enough to vote again.
    b = Node("b", FAST, 0, Disk())
    log = node_with("a", [1, 1, 1, 1]).disk.log
    b.core.step(AppendEntries("a", "b", 3, 4, 1, (), 4, 0))  # first contact: commit is 4
    sent(b)
    b.core.step(AppendEntries("a", "b", 3, 0, 0, tuple(log), 4, 0))
    sent(b)
    assert b.core.commit_index == 4 and b.core.configuration.voters() == ["a", "b", "c"]
    b.core.step(RequestVote("a", "b", 5, 4, 1, transfer=True))
    b.core.step(RequestVote("c", "b", 6, 9, 4))
    assert [m.granted for m in sent(b, VoteResponse)] == [False, False]
    for _ in range(5 * FAST.heartbeat_timeout_ticks):
        b.core.tick()
    assert b.core.role is Role.FOLLOWER and not sent(b, PreVote) and not sent(b, RequestVote)


def test_a_wiped_member_votes_again_once_its_re_add_reached_it() -> None:
    # The operator removes the member whose disk was lost and adds it again: the leader
    # promotes it with a configuration entry appended after it started, and from then on the
    # node holds every entry its lost disk may have acknowledged.
    b = Node("b", FAST, 0, Disk())
    log = node_with("a", [1, 1, 1]).disk.log
    log.append(config_entry(4, 2, config_of("a", "c")))  # removal
    log.append(config_entry(5, 2, config_of("a", "c", learners="b")))  # re-add: non-voter
    b.core.step(AppendEntries("a", "b", 2, 5, 2, (), 5, 0))  # first contact: a's last index
    sent(b)
    b.core.step(AppendEntries("a", "b", 2, 0, 0, tuple(log), 5, 0))
    sent(b)
    assert b.core.configuration.voters() == ["a", "c"]
    promotion = config_entry(6, 2, config_of("a", "b", "c"))
    b.core.step(AppendEntries("a", "b", 2, 5, 2, (promotion,), 6, 0))
    sent(b)
    assert b.core.configuration.voters() == ["a", "b", "c"]
    b.core.step(RequestVote("c", "b", 3, 6, 2, transfer=True))
    assert [m.granted for m in sent(b, VoteResponse)] == [True]


def test_a_promotion_older_than_what_a_leader_showed_does_not_count() -> None:
    # b joined, was promoted at 3 and lost its disk soon after: the leader that calls the
    # wiped b first shows its last index (6), so the old promotion at 3 does not make b a
    # voter again, although b sees itself turn from non-voter into voter in its log.
    b = Node("b", FAST, 0, Disk())
    log = [
        config_entry(1, 1, config_of("a")),
        config_entry(2, 1, config_of("a", learners="b")),
        config_entry(3, 1, config_of("a", "b")),
    ] + [node_with("a", [1] * 6).disk.log[i] for i in range(3, 6)]
    b.core.step(AppendEntries("a", "b", 2, 6, 1, (), 6, 0))
    sent(b)
    b.core.step(AppendEntries("a", "b", 2, 0, 0, tuple(log[:2]), 6, 0))
    b.core.step(AppendEntries("a", "b", 2, 2, 1, tuple(log[2:]), 6, 0))
    sent(b)
    assert b.core.configuration.voters() == ["a", "b"] and b.core.commit_index == 6
    b.core.step(RequestVote("a", "b", 3, 6, 1, transfer=True))
    assert [m.granted for m in sent(b, VoteResponse)] == [False]
    for _ in range(5 * FAST.heartbeat_timeout_ticks):
        b.core.tick()
    assert not sent(b, PreVote) and not sent(b, RequestVote)


def test_a_wiped_member_does_not_trust_the_snapshot_of_a_stale_leader() -> None:
    # Seed 401488 of the simulator: the wiped c is first sent a snapshot at 3 by a leader of
    # term 3 while entries 4.. were committed in term 2 with the help of c's lost disk;
    # after installing it c must still refuse votes and not campaign.
    meta = SnapshotMeta(3, 2, config_of("a", "b", "c"))
    state = msgpack.packb([b"1", b"2"])
    c = Node("c", FAST, 0, Disk())
    c.core.step(InstallSnapshot("a", "c", 3, meta, 0, state, True))
    c.handle_ready()
    assert c.core.commit_index == 3 and not c.core.is_empty
    c.core.step(RequestVote("b", "c", 4, 3, 2, transfer=True))
    assert [m.granted for m in sent(c, VoteResponse)] == [False]
    for _ in range(5 * FAST.heartbeat_timeout_ticks):
        c.core.tick()
    assert c.core.role is Role.FOLLOWER and not sent(c, PreVote) and not sent(c, RequestVote)


def test_a_wiped_member_cannot_help_elect_a_leader_missing_committed_entries() -> None:
    # a and c commit writes while b is down; then c loses its disk and has relearnt only the
    # start of the log when a crashes. b (stale) and c (wiped) together are a majority, and
    # c's partial log is no better than b's: only c's "catching up" refusal keeps b, which
    # lacks the committed writes, from being elected.
    cfg = replace(FAST, max_append_entries=2)
    c = Cluster("abc", cfg)
    c.elect("a")
    c.crash("b")
    for i in range(5):
        c["a"].propose(b"w%d" % i)
    c.deliver()
    committed = c["a"].commit_index
    assert committed == c["a"].last_index
    c.nodes["c"] = Node("c", cfg, 0, Disk())  # wiped
    for _ in range(3 * cfg.commit_ticks):
        c.tick(1, settle=False)
        # c gets only appends that rebuild entries 1..2 (those b has too)
        c.deliver(lambda m: not isinstance(m, AppendEntries) or m.dst != "c"
                  or not m.entries or m.entries[-1].index <= 2)
    assert c.nodes["c"].disk.log == c.nodes["a"].disk.log[:2]
    c.drop_all()
    c.crash("a")
    c.recover("b")
    c.tick(10 * cfg.heartbeat_timeout_ticks)
    assert c["b"].role is not Role.LEADER and c["c"].role is not Role.LEADER
    c.recover("a")
    c.tick(10 * cfg.heartbeat_timeout_ticks)
    leader = c.leader()
    assert leader is not None
    assert c[leader].commit_index >= committed
    assert c.nodes["c"].commands() == [b"w%d" % i for i in range(5)]


def test_a_leader_never_sends_replication_in_the_ready_that_bumps_its_term() -> None:
    # The runtime sends AppendEntries before fsyncing the rest of the Ready: that is safe only
    # if the Ready does not carry the term the AppendEntries are sent in.
    n = node_with("a", [1, 1], term=1, ids="a")
    n.disk.log[0] = config_entry(1, 1, config_of("a", learners="b"))
    n.restart()  # the only voter: leads at once, with b to replicate to
    assert n.core.role is Role.LEADER
    first = n.core.ready()
    assert first.hard_state == HardState(2, "a")
    assert not [m for m in first.messages if isinstance(m, AppendEntries)]
    n.core.persisted(first.entries[-1].index, first.entries[-1].term)
    assert n.core.has_ready()
    second = n.core.ready()
    assert second.hard_state is None
    assert [m.dst for m in second.messages if isinstance(m, AppendEntries)] == ["b"]


def test_a_wiped_member_still_catching_up_after_a_restart_does_not_vote() -> None:
    # Seed 500883 of the simulator: the wiped member installs a snapshot, crashes and restarts
    # with a log; it must not take itself for a member with an intact disk.
    meta = SnapshotMeta(3, 2, config_of("a", "b", "c"))
    c = Node("c", FAST, 0, Disk())
    c.core.step(InstallSnapshot("a", "c", 3, meta, 0, msgpack.packb([b"1", b"2"]), True))
    c.handle_ready()
    assert c.disk.snapshot == meta and c.disk.hard_state == HardState()  # term held back
    c.restart()
    assert not c.core.is_empty and c.core.catching_up
    c.core.step(RequestVote("b", "c", 4, 3, 2, transfer=True))
    assert [m.granted for m in sent(c, VoteResponse)] == [False]
    for _ in range(5 * FAST.heartbeat_timeout_ticks):
        c.core.tick()
    assert not sent(c, PreVote) and not sent(c, RequestVote)


def test_a_promotion_compacted_into_a_snapshot_counts_after_the_non_voter_config() -> None:
    # b was re-added as a non-voter at 5 (a's probe showed 5), then fell behind while a
    # promoted it and compacted: the snapshot carries the promotion, which follows 5.
    b = Node("b", FAST, 0, Disk())
    log = node_with("a", [1, 1, 1]).disk.log
    log.append(config_entry(4, 2, config_of("a", "c")))
    log.append(config_entry(5, 2, config_of("a", "c", learners="b")))
    b.core.step(AppendEntries("a", "b", 2, 5, 2, (), 5, 0))
    sent(b)
    b.core.step(AppendEntries("a", "b", 2, 0, 0, tuple(log), 5, 0))
    sent(b)
    meta = SnapshotMeta(9, 2, config_of("a", "b", "c"))
    b.core.step(InstallSnapshot("a", "b", 2, meta, 0, msgpack.packb([]), True))
    b.handle_ready()
    assert b.disk.hard_state == HardState(2, "a")  # promoted: the term is durable again
    b.restart()
    assert not b.core.catching_up
    b.core.step(RequestVote("c", "b", 3, 9, 2, transfer=True))
    assert [m.granted for m in sent(b, VoteResponse)] == [True]


def test_what_a_leader_of_an_older_term_showed_does_not_hide_a_newer_promotion() -> None:
    # a (term 2) showed the new member b its log up to 10; c won term 3 on another branch and
    # promoted b at 6: a's position says nothing about c's entry 6 (sim seed 400608).
    b = Node("b", FAST, 0, Disk())
    b.core.step(AppendEntries("a", "b", 2, 10, 2, (), 5, 0))
    sent(b)
    log = node_with("c", [1, 1, 1]).disk.log
    log.append(config_entry(4, 2, config_of("a", "c")))
    log.append(config_entry(5, 2, config_of("a", "c", learners="b")))
    b.core.step(AppendEntries("c", "b", 3, 5, 2, (), 5, 0))
    b.core.step(AppendEntries("c", "b", 3, 0, 0, tuple(log), 5, 0))
    promotion = config_entry(6, 3, config_of("a", "b", "c"))
    b.core.step(AppendEntries("c", "b", 3, 5, 2, (promotion,), 6, 0))
    b.handle_ready()
    assert b.disk.hard_state == HardState(3, "c")
    b.core.step(RequestVote("a", "b", 4, 6, 3, transfer=True))
    assert [m.granted for m in sent(b, VoteResponse)] == [True]
