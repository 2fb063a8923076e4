"""Membership: single-server changes through the log, non-voters promoted, removals."""

from __future__ import annotations

import pytest

from konsul.raft.core import NotLeaderError, ProposalRejected, Role
from konsul.raft.messages import (
    AppendEntries,
    PreVote,
    PreVoteResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from konsul.raft.types import Entry, EntryKind, Member
from tests.raft.core_harness import (
    FAST,
    Cluster,
    Node,
    config_entry,
    config_of,
    node_with,
    sent,
    single_node,
)


def member(node_id: str) -> Member:
    return Member(node_id, f"{node_id}:7000", True, f"{node_id}:8500")


def grow(c: Cluster, node_id: str) -> None:
    """Add an empty node through the leader and wait until it is a voter."""
    leader = c.leader()
    assert leader is not None
    c.nodes[node_id] = Node(node_id)
    c[leader].propose_add(member(node_id))
    for _ in range(20 * FAST.commit_ticks):
        c.tick(1)
        m = c[leader].committed_configuration.get(node_id)
        if m is not None and m.voter:
            return
    raise AssertionError(f"{node_id} was not promoted")


def test_a_new_server_joins_as_a_non_voter_and_is_promoted_once_caught_up() -> None:
    c = Cluster("a", nodes={"a": single_node("a")})
    for i in range(10):
        c["a"].propose(b"%d" % i)
    c.pump()
    c.nodes["b"] = Node("b")
    index, _ = c["a"].propose_add(member("b"))
    learner = c["a"].configuration.get("b")
    assert learner is not None and not learner.voter  # a non-voter, even if asked as voter
    assert c["a"].configuration.voters() == ["a"]
    c.deliver()
    assert c["a"].commit_index >= index  # a non-voter's vote is not needed to commit its add
    c.tick(4 * FAST.commit_ticks)
    assert c["a"].committed_configuration.voters() == ["a", "b"]
    assert c["b"].committed_configuration.voters() == ["a", "b"]
    assert c.nodes["b"].commands() == c.nodes["a"].commands()
    # now a needs b for a majority
    c.crash("b")
    index, _ = c["a"].propose(b"late")
    c.tick(4 * FAST.commit_ticks, only="a")
    assert c["a"].commit_index < index


def test_a_cluster_grows_from_one_to_three_and_survives_a_leader_loss() -> None:
    c = Cluster("a", nodes={"a": single_node("a")})
    grow(c, "b")
    grow(c, "c")
    assert c["a"].committed_configuration.voters() == ["a", "b", "c"]
    c.crash("a")
    c.tick(5 * FAST.heartbeat_timeout_ticks)
    assert c.leader() in ("b", "c")


def test_configuration_changes_are_refused_when_not_allowed() -> None:
    c = Cluster("abc")
    with pytest.raises(NotLeaderError):
        c["a"].propose_add(member("d"))
    c.elect("a")
    with pytest.raises(ProposalRejected, match="already a member"):
        c["a"].propose_add(member("b"))
    with pytest.raises(ProposalRejected, match="already used"):
        c["a"].propose_add(Member("d", "b:7000"))
    with pytest.raises(ProposalRejected, match="not a member"):
        c["a"].propose_remove("zz")
    c["a"].propose_add(member("d"))
    with pytest.raises(ProposalRejected, match="in progress"):
        c["a"].propose_remove("c")  # one uncommitted change at a time
    c.deliver()
    c["a"].propose_remove("d")  # committed: the next one may go


def test_a_new_leader_changes_the_configuration_only_after_committing_in_its_term() -> None:
    c = Cluster("abc")
    while c["b"].role is Role.FOLLOWER:
        c["b"].tick()
    c.deliver(lambda m: not isinstance(m, AppendEntries))  # b wins; its NOOP reaches nobody
    assert c["b"].role is Role.LEADER
    with pytest.raises(ProposalRejected, match="not committed an entry of its term"):
        c["b"].propose_remove("c")
    c.deliver()
    c["b"].propose_remove("c")


def test_a_leader_says_why_a_change_must_wait_until_it_passes() -> None:
    """What ``config_change_blocker`` names passes by itself: a runtime waits for it instead of
    failing a change that merely came early (a leave forwarded to a leader elected a moment
    ago, a second removal right after the first)."""
    c = Cluster("abc")
    while c["b"].role is Role.FOLLOWER:
        c["b"].tick()
    c.deliver(lambda m: not isinstance(m, AppendEntries))  # b wins; its NOOP reaches nobody
    assert c["b"].config_change_blocker == "leader has not committed an entry of its term yet"
    assert c["a"].config_change_blocker is None  # a follower refuses every change, for good
    c.deliver()
    assert c["b"].config_change_blocker is None
    c["b"].propose_remove("c")
    assert c["b"].config_change_blocker == "a configuration change is already in progress"
    c.deliver()
    assert c["b"].config_change_blocker is None
    c["b"].transfer_leadership("a")
    assert c["b"].config_change_blocker == "leadership transfer in progress"
    with pytest.raises(ProposalRejected, match="transfer in progress"):
        c["b"].propose_add(member("d"))
    c.deliver()
    assert c["a"].role is Role.LEADER and c["a"].config_change_blocker is None
    assert c["b"].config_change_blocker is None


def test_the_last_voter_cannot_be_removed() -> None:
    n = single_node("a")
    with pytest.raises(ProposalRejected, match="last voter"):
        n.core.propose_remove("a")


def test_a_configuration_takes_effect_when_appended_and_is_undone_by_truncation() -> None:
    b = node_with("b", [1, 1], term=2)
    new = config_of("a", "b", "c", "d")
    b.core.step(AppendEntries("a", "b", 2, 2, 1, (config_entry(3, 2, new),), 2, 0))
    assert b.core.configuration == new
    assert b.core.committed_configuration == config_of("a", "b", "c")
    # a new leader never had that entry: it is overwritten, the old configuration is back
    b.core.step(AppendEntries("c", "b", 3, 2, 1, (Entry(3, 3, EntryKind.NOOP),), 2, 0))
    assert b.core.configuration == config_of("a", "b", "c")
    b.core.step(AppendEntries("c", "b", 3, 3, 3, (), 3, 0))
    sent(b)
    assert b.core.committed_configuration == config_of("a", "b", "c")


def test_a_removed_follower_cannot_disrupt_the_cluster() -> None:
    c = Cluster("abc")
    c.elect("a")
    term = c["a"].term
    c["a"].propose_remove("c")
    c.deliver(lambda m: m.dst != "c")  # c never learns it was removed
    c.tick(2 * FAST.commit_ticks)
    assert c["a"].committed_configuration.voters() == ["a", "b"]
    assert not c.take(lambda m: m.dst == "c")  # nobody talks to c any more
    c.tick(10 * FAST.heartbeat_timeout_ticks)
    # it keeps trying with pre-votes, which the members refuse while they hear from a
    assert c["c"].role is not Role.LEADER and c["c"].term == term
    assert c.leader() == "a" and c["a"].term == term and c["b"].term == term
    c["b"].step(RequestVote("c", "b", term + 5, 1000, term + 4, transfer=True))
    assert not [m for m in c.nodes["b"].handle_ready() if m.dst == "c"]
    assert c["b"].term == term


def test_removing_the_leader_steps_it_down_after_the_change_commits() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].propose_remove("a")
    assert c["a"].role is Role.LEADER  # still leads while the change is uncommitted
    handover: list[TimeoutNow] = []

    def watch(m: object) -> bool:
        if isinstance(m, TimeoutNow):
            handover.append(m)
        return True

    c.deliver(watch)
    assert c["a"].role is Role.FOLLOWER
    assert len(handover) == 1  # the most caught-up voter is told to take over at once
    assert c.leader() == handover[0].dst
    c.tick(10 * FAST.heartbeat_timeout_ticks)
    assert c["a"].role is Role.FOLLOWER and c.leader() in ("b", "c")
    assert not c.take(lambda m: isinstance(m, PreVote) and m.src == "a")


def test_a_follower_left_as_the_only_voter_leads_at_once() -> None:
    c = Cluster("ab")
    c.elect("a")
    c["a"].propose_remove("a")
    c.deliver(lambda m: m.dst == "b")  # b appends the change; a never hears back
    assert c["b"].role is Role.LEADER
    assert c["b"].configuration.voters() == ["b"]
    c.deliver()
    assert c["b"].committed_configuration.voters() == ["b"]
    c["b"].propose(b"alone")
    c.pump()
    assert c.nodes["b"].commands()[-1] == b"alone"


def test_a_two_node_cluster_shrinks_to_one() -> None:
    c = Cluster("ab")
    c.elect("a")
    c["a"].propose_remove("b")
    c.crash("b")  # the removed node is gone already: the change commits with a alone
    c.deliver()
    assert c["a"].committed_configuration.voters() == ["a"]
    c["a"].propose(b"solo")
    c.pump()
    assert c.nodes["a"].commands() == [b"solo"]


def test_a_voter_behind_a_membership_change_votes_for_a_member_it_does_not_know_yet() -> None:
    # Raft dissertation 4.1: servers process vote requests without consulting their
    # configuration. c lags behind the change that added d; d (a voter in the latest
    # configuration) needs c's vote, and c must give it (seed 300911 of the simulator).
    c = node_with("c", [1, 1, 1], term=1, ids="abc")
    for _ in range(3 * FAST.heartbeat_timeout_ticks):
        c.core.tick()  # no leader heard from: votes may be granted
    sent(c)
    c.core.step(PreVote("d", "c", 2, 5, 1))
    assert [m.granted for m in sent(c, PreVoteResponse)] == [True]
    c.core.step(RequestVote("d", "c", 2, 5, 1))
    assert [m.granted for m in sent(c, VoteResponse)] == [True]
    assert c.core.term == 2 and c.core.vote == "d"


def test_a_non_member_cannot_claim_a_leadership_transfer_to_skip_the_lease() -> None:
    # Votes from outside our configuration are processed, but a server we do not know cannot
    # make us ignore the leader we hear from (only a member's transfer bypasses the lease).
    c = Cluster("abc")
    c.elect("a")
    term = c["a"].term
    c["b"].step(RequestVote("x", "b", term + 1, 1000, term, transfer=True))
    c["b"].step(PreVote("x", "b", term + 1, 1000, term))
    out = [m for m in c.nodes["b"].handle_ready() if m.dst == "x"]
    assert [(type(m), m.granted) for m in out] == [(PreVoteResponse, False)]  # type: ignore[attr-defined]
    assert c["b"].term == term and c["b"].vote == "a"
