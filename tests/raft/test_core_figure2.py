"""Every rule of Figure 2 of the Raft paper, one hand-built scenario each (Figure 8 included)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from konsul.raft.core import RaftCore, Role
from konsul.raft.messages import (
    AppendEntries,
    AppendResponse,
    PreVote,
    RequestVote,
    VoteResponse,
)
from konsul.raft.types import Entry, EntryKind, HardState
from tests.raft.core_harness import FAST, Cluster, cmd, node_with, sent

NO_PRE_VOTE = replace(FAST, pre_vote=False)


def ae(src: str, dst: str, term: int, prev: int, prev_term: int, entries: list[Entry],
       commit: int = 0) -> AppendEntries:
    return AppendEntries(src, dst, term, prev, prev_term, tuple(entries), commit, 0)


def only(msgs: list, kind: type) -> object:
    found = [m for m in msgs if isinstance(m, kind)]
    assert len(found) == 1, msgs
    return found[0]


# ---------------------------------------------------------------- persistent state


def test_term_and_vote_are_in_the_same_ready_as_the_vote_they_justify() -> None:
    b = node_with("b", [1], term=1)
    b.core.step(RequestVote("a", "b", 2, 1, 1))
    rd = b.core.ready()
    assert rd.hard_state == HardState(2, "a")
    assert rd.messages == [VoteResponse("b", "a", 2, True)]


def test_term_and_vote_survive_a_restart() -> None:
    b = node_with("b", [1], term=1)
    b.core.step(RequestVote("a", "b", 2, 1, 1))
    b.handle_ready()
    b.restart()
    assert (b.core.term, b.core.vote) == (2, "a")
    b.core.step(RequestVote("c", "b", 2, 1, 1))
    assert only(sent(b), VoteResponse) == VoteResponse("b", "c", 2, False)


# ---------------------------------------------------------------- all servers


def test_all_servers_apply_committed_entries_in_order_once() -> None:
    c = Cluster("abc")
    c.elect("a")
    for i in range(10):
        c["a"].propose(f"w{i}".encode())
    c.deliver()
    c.tick(4)
    for n in c.nodes.values():
        assert n.commands() == [f"w{i}".encode() for i in range(10)]
        assert [e.index for e in n.applied] == list(range(1, len(n.applied) + 1))


@pytest.mark.parametrize("kind", ["append", "vote", "response"])
def test_a_higher_term_in_any_message_makes_a_leader_follow(kind: str) -> None:
    c = Cluster("abc")
    c.elect("a")
    a = c.nodes["a"]
    term = c["a"].term
    if kind == "append":
        msg: object = ae("b", "a", term + 3, 0, 0, [])
    elif kind == "vote":
        msg = RequestVote("b", "a", term + 3, 100, term + 2, transfer=True)
    else:
        msg = AppendResponse("b", "a", term + 3, False)
    a.core.step(msg)  # type: ignore[arg-type]
    assert a.core.role is Role.FOLLOWER
    assert a.core.term == term + 3
    # a vote is granted to the candidate; a leader is recorded as the vote of its term
    expected_vote = None if kind == "response" else "b"
    assert a.core.ready().hard_state == HardState(term + 3, expected_vote)


# ---------------------------------------------------------------- followers


def test_follower_that_hears_nothing_starts_an_election() -> None:
    b = node_with("b", [1], term=1, cfg=NO_PRE_VOTE)
    ticks = 0
    while b.core.role is Role.FOLLOWER:
        b.core.tick()
        ticks += 1
    assert FAST.heartbeat_timeout_ticks <= ticks < 2 * FAST.heartbeat_timeout_ticks
    assert b.core.role is Role.CANDIDATE
    assert b.core.term == 2
    votes = sent(b, RequestVote)
    assert {m.dst for m in votes} == {"a", "c"}


def test_heartbeats_keep_a_follower_from_campaigning() -> None:
    b = node_with("b", [1], term=1)
    for i in range(10 * FAST.heartbeat_timeout_ticks):
        b.core.tick()
        if i % 5 == 0:
            b.core.step(ae("a", "b", 1, 1, 1, []))
    assert b.core.role is Role.FOLLOWER
    assert b.core.leader_id == "a"
    assert not sent(b, PreVote)


def test_granting_a_vote_resets_the_election_timer() -> None:
    b = node_with("b", [1], term=1, cfg=NO_PRE_VOTE)
    for _ in range(b.core._randomized_timeout - 1):
        b.core.tick()
    b.core.step(RequestVote("c", "b", 2, 1, 1))
    assert b.core.vote == "c"
    for _ in range(b.core._randomized_timeout - 1):
        b.core.tick()
    assert b.core.role is Role.FOLLOWER
    b.core.tick()
    assert b.core.role is Role.CANDIDATE


# ---------------------------------------------------------------- candidates


def test_candidate_increments_term_votes_for_itself_and_asks_everyone() -> None:
    a = node_with("a", [1, 1], term=1, ids="abcde", cfg=NO_PRE_VOTE)
    while a.core.role is Role.FOLLOWER:
        a.core.tick()
    rd = a.core.ready()
    assert rd.hard_state == HardState(2, "a")
    assert sorted(m.dst for m in rd.messages if isinstance(m, RequestVote)) == list("bcde")
    assert all(m == RequestVote("a", m.dst, 2, 2, 1) for m in rd.messages)


def test_candidate_with_a_majority_of_votes_becomes_leader() -> None:
    a = node_with("a", [1], term=1, ids="abcde", cfg=NO_PRE_VOTE)
    a.core._campaign(pre=False)
    a.core.step(VoteResponse("b", "a", 2, True))
    assert a.core.role is Role.CANDIDATE  # 2 of 5
    a.core.step(VoteResponse("b", "a", 2, True))  # a duplicate counts once
    assert a.core.role is Role.CANDIDATE
    a.core.step(VoteResponse("c", "a", 2, True))
    assert a.core.role is Role.LEADER


def test_candidate_rejected_by_a_majority_goes_back_to_follower() -> None:
    a = node_with("a", [1], term=1, cfg=NO_PRE_VOTE)
    a.core._campaign(pre=False)
    a.core.step(VoteResponse("b", "a", 2, False))
    a.core.step(VoteResponse("c", "a", 2, False))
    assert a.core.role is Role.FOLLOWER
    assert a.core.term == 2


def test_candidate_that_hears_from_a_leader_of_its_term_follows_it() -> None:
    a = node_with("a", [1], term=1, cfg=NO_PRE_VOTE)
    a.core._campaign(pre=False)
    a.core.step(ae("b", "a", 2, 1, 1, []))
    assert a.core.role is Role.FOLLOWER
    assert a.core.leader_id == "b"


def test_candidate_without_a_result_starts_a_new_election() -> None:
    a = node_with("a", [1], term=1, cfg=NO_PRE_VOTE)
    a.core._campaign(pre=False)
    sent(a)
    ticks = 0
    while a.core.term == 2:
        a.core.tick()
        ticks += 1
    assert FAST.election_timeout_ticks <= ticks < 2 * FAST.election_timeout_ticks
    assert a.core.role is Role.CANDIDATE
    assert a.core.term == 3
    assert {m.term for m in sent(a, RequestVote)} == {3}


# ---------------------------------------------------------------- leaders


def test_new_leader_appends_a_noop_and_announces_itself_at_once() -> None:
    c = Cluster("abc")
    c.elect("a")
    noop = c.nodes["a"].disk.log[-1]
    assert noop.kind is EntryKind.NOOP and noop.term == c["a"].term
    assert c["b"].leader_id == "a" and c["c"].leader_id == "a"
    assert c["a"].commit_index == noop.index
    assert c["c"].commit_index < noop.index  # followers learn it with the next heartbeat
    c.tick(FAST.commit_ticks)
    assert c["c"].commit_index == noop.index


def test_idle_leader_sends_heartbeats_every_commit_ticks() -> None:
    c = Cluster("abc")
    c.elect("a")
    beats = 0

    def count(m: object) -> bool:
        nonlocal beats
        beats += isinstance(m, AppendEntries) and m.dst == "b"
        return True

    for _ in range(10 * FAST.commit_ticks):
        c["a"].tick()
        c.deliver(count)
    assert beats == 10


def test_client_command_is_appended_then_committed_after_a_majority_stores_it() -> None:
    c = Cluster("abc")
    c.elect("a")
    index, term = c["a"].propose(b"x")
    assert (index, term) == (c["a"].last_index, c["a"].term)
    c.crash("c")
    c.deliver()  # only b acknowledges: with a itself that is a majority
    assert c["a"].commit_index == index
    assert c.nodes["a"].commands() == [b"x"]


def test_leader_retries_with_an_earlier_entry_after_a_rejection() -> None:
    # b missed everything after index 1; c has a divergent uncommitted tail
    a = node_with("a", [1, 1, 1, 2, 2, 2], term=2)
    b = node_with("b", [1], term=2)
    cc = node_with("c", [1, 1, 1, 2, 2, 2], term=2)
    cluster = Cluster("abc", nodes={"a": a, "b": b, "c": cc})
    cluster.elect("a")
    cluster.tick(FAST.commit_ticks * 2)
    assert b.disk.log == a.disk.log
    assert b.core.commit_index == a.core.commit_index == a.core.last_index


# Figure 8 (a leader commits entries of earlier terms only with one of its own) is staged
# message by message in tests/raft/testdata/figure8*.txt.


# ---------------------------------------------------------------- AppendEntries receiver


def test_append_entries_from_an_older_term_is_refused() -> None:
    b = node_with("b", [1, 1], term=3)
    b.core.step(ae("a", "b", 2, 1, 1, [cmd(2, 2)]))
    resp = only(sent(b), AppendResponse)
    assert resp.term == 3 and not resp.success
    assert b.disk.log[1].term == 1


def test_append_entries_is_refused_when_prev_entry_is_missing_or_differs() -> None:
    b = node_with("b", [1, 1, 2], term=3)
    b.core.step(ae("a", "b", 3, 5, 3, [cmd(6, 3)]))  # b has no entry 5
    r1 = only(sent(b), AppendResponse)
    assert not r1.success and r1.reject_index == 5 and r1.conflict_index == 3
    b.core.step(ae("a", "b", 3, 3, 3, [cmd(4, 3)]))  # entry 3 has term 2, not 3
    r2 = only(sent(b), AppendResponse)
    assert not r2.success and (r2.conflict_index, r2.conflict_term) == (3, 2)
    assert b.core.last_index == 3


def test_conflicting_entries_are_deleted_with_all_that_follow() -> None:
    b = node_with("b", [1, 1, 2, 2, 2], term=3)
    b.core.step(ae("a", "b", 3, 2, 1, [cmd(3, 3)]))
    rd = b.core.ready()
    assert rd.truncate_from == 3
    assert rd.entries == [cmd(3, 3)]
    assert b.core.last_index == 3


def test_entries_already_in_the_log_are_not_appended_twice() -> None:
    b = node_with("b", [1, 1, 2, 2], term=2)
    b.core.step(ae("a", "b", 2, 1, 1, [cmd(2, 1), cmd(3, 2)]))  # a stale, shorter append
    rd = b.core.ready()
    assert rd.truncate_from is None and rd.entries == []
    assert b.core.last_index == 4  # the entry after the batch is kept


def test_new_entries_are_appended_and_acknowledged_after_they_are_durable() -> None:
    b = node_with("b", [1], term=2)
    b.core.step(ae("a", "b", 2, 1, 1, [cmd(2, 2), cmd(3, 2)]))
    rd = b.core.ready()
    assert rd.entries == [cmd(2, 2), cmd(3, 2)]
    assert rd.messages == [AppendResponse("b", "a", 2, True, 3)]  # sent only after the fsync


def test_follower_commit_is_the_leaders_capped_at_its_last_new_entry() -> None:
    b = node_with("b", [1, 1, 1, 1], term=2)
    b.core.step(ae("a", "b", 2, 1, 1, [cmd(2, 1)], commit=10))
    assert b.core.commit_index == 2  # not 10: entries 3, 4 were not checked against the leader
    b.core.step(ae("a", "b", 2, 2, 1, [cmd(3, 1), cmd(4, 1)], commit=3))
    assert b.core.commit_index == 3


def test_follower_applies_only_entries_it_has_persisted() -> None:
    b = node_with("b", [1], term=2)
    b.auto_persist = False
    b.core.step(ae("a", "b", 2, 1, 1, [cmd(2, 2), cmd(3, 2)], commit=3))
    b.handle_ready()
    assert b.core.commit_index == 3
    assert [e.index for e in b.applied] == [1]
    b.ack_persisted()
    b.handle_ready()
    assert [e.index for e in b.applied] == [1, 2, 3]


def test_stale_persistence_ack_after_a_truncation_is_ignored() -> None:
    b = node_with("b", [1], term=2)
    b.auto_persist = False
    b.core.step(ae("a", "b", 2, 1, 1, [cmd(2, 2), cmd(3, 2)]))
    b.handle_ready()
    b.core.step(ae("c", "b", 3, 1, 1, [cmd(2, 3), cmd(3, 3)], commit=3))
    b.core.persisted(3, 2)  # the ack of the first write arrives late: entry 3 is now term 3
    assert b.core._applicable_index() == 1
    b.handle_ready()
    b.ack_persisted()
    b.handle_ready()
    assert [e.term for e in b.applied] == [1, 3, 3]


# ---------------------------------------------------------------- RequestVote receiver


def test_vote_request_from_an_older_term_is_refused() -> None:
    b = node_with("b", [1], term=3)
    b.core.step(RequestVote("a", "b", 2, 5, 2))
    assert sent(b) == [VoteResponse("b", "a", 3, False)]
    assert b.core.vote is None


def test_one_vote_per_term_first_come_first_served() -> None:
    b = node_with("b", [1], term=1)
    b.core.step(RequestVote("a", "b", 2, 1, 1))
    b.core.step(RequestVote("c", "b", 2, 1, 1))
    b.core.step(RequestVote("a", "b", 2, 1, 1))  # a retry by the same candidate is granted
    granted = [m.granted for m in sent(b, VoteResponse)]
    assert granted == [True, False, True]


@pytest.mark.parametrize(
    ("cand_last_index", "cand_last_term", "granted"),
    [
        (3, 2, True),  # same last term, same length
        (5, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (2, 3, True),  # higher last term wins even when shorter
        (9, 1, False),  # lower last term loses even when longer
    ],
)
def test_vote_only_for_a_log_at_least_as_up_to_date(
    cand_last_index: int, cand_last_term: int, granted: bool
) -> None:
    b = node_with("b", [1, 1, 2], term=2)
    b.core.step(RequestVote("a", "b", 3, cand_last_index, cand_last_term))
    assert only(sent(b), VoteResponse).granted is granted


def test_a_core_that_skips_the_up_to_date_check_is_caught() -> None:
    class VotesBlindly(RaftCore):
        def _log_is_up_to_date(self, last_index: int, last_term: int) -> bool:
            return True

    b = node_with("b", [1, 1, 2], term=2, core_class=VotesBlindly)
    b.core.step(RequestVote("a", "b", 3, 2, 1))
    assert only(sent(b), VoteResponse).granted  # the hook is what the real rule lives in
