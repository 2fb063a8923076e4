"""Leadership transfer: TimeoutNow to a caught-up voter, proposals refused meanwhile, abort."""

from __future__ import annotations

import pytest

from konsul.raft.core import NotLeaderError, ProposalRejected, Role
from konsul.raft.messages import AppendEntries, Message, RequestVote, TimeoutNow
from tests.raft.core_harness import FAST, Cluster, single_node


def test_transfer_to_a_caught_up_voter_happens_at_once() -> None:
    c = Cluster("abc")
    c.elect("a")
    term = c["a"].term
    assert c["a"].transfer_leadership("b") == "b"
    assert c["a"].lead_transferee == "b" == c["a"].transfer_target
    sent = c.take(lambda m: isinstance(m, TimeoutNow))
    assert [m.dst for m in sent] == ["b"]
    c.net.extend(sent)
    c.deliver()  # no tick: the transfer needs no timeout
    assert c.leader() == "b"
    assert c["b"].term == term + 1
    assert c["a"].role is Role.FOLLOWER and c["a"].leader_id == "b"
    assert c["a"].lead_transferee is None


# A lagging target caught up before TimeoutNow: tests/raft/testdata/transfer.txt.


def test_proposals_are_refused_during_a_transfer_and_accepted_after_it_aborts() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.crash("b")
    c["a"].transfer_leadership("b")
    with pytest.raises(ProposalRejected, match="transfer"):
        c["a"].propose(b"x")
    with pytest.raises(ProposalRejected, match="transfer"):
        c["a"].propose_remove("c")
    c.tick(2 * FAST.election_timeout_ticks)
    assert c["a"].role is Role.LEADER and c["a"].lead_transferee is None
    c["a"].propose(b"x")


def test_transfer_without_a_target_picks_the_most_caught_up_voter() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.crash("b")
    for i in range(3):
        c["a"].propose(b"%d" % i)
    c.deliver()
    assert c["a"].transfer_leadership(None) == "c"


def test_impossible_transfers_are_refused() -> None:
    c = Cluster("abc")
    with pytest.raises(NotLeaderError):
        c["a"].transfer_leadership("b")
    c.elect("a")
    with pytest.raises(ProposalRejected):
        c["a"].transfer_leadership("a")
    with pytest.raises(ProposalRejected):
        c["a"].transfer_leadership("zz")
    with pytest.raises(ProposalRejected):
        single_node("a").core.transfer_leadership(None)


def test_the_targets_election_overrides_the_followers_lease() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].transfer_leadership("c")
    votes: list[RequestVote] = []

    def watch(m: Message) -> bool:
        if isinstance(m, RequestVote):
            votes.append(m)
        return not isinstance(m, AppendEntries) or m.src != "a"

    c.deliver(watch)  # b heard from a a moment ago, yet votes for c
    assert votes and all(v.transfer for v in votes)
    assert c.leader() == "c"
