"""ReadIndex: the leader confirms its leadership with a heartbeat round before serving reads."""

from __future__ import annotations

from konsul.raft.core import ReadState, Role
from konsul.raft.messages import AppendEntries, AppendResponse, Message, ReadIndexRequest
from tests.raft.core_harness import FAST, Cluster, single_node


def test_leader_read_waits_for_a_majority_to_confirm_its_leadership() -> None:
    c = Cluster("abc")
    c.elect("a")
    a = c.nodes["a"]
    a.core.read_index(7)
    beats = c.take(lambda m: isinstance(m, AppendEntries))
    assert {m.dst for m in beats} == {"b", "c"} and all(m.read_ctx > 0 for m in beats)
    assert a.read_states == []
    c.net.extend(beats)
    c.deliver(lambda m: not (isinstance(m, AppendResponse) and m.src == "c"))
    assert a.read_states == [ReadState(7, a.core.commit_index)]  # b's answer is enough


def test_a_deposed_leader_cannot_serve_a_read() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.partition("a", "bc")
    c.tick(3 * FAST.heartbeat_timeout_ticks, only="bc")  # b and c elect a new leader
    new = next(i for i in "bc" if c[i].role is Role.LEADER)
    assert c["a"].role is Role.LEADER  # a does not know yet
    c[new].propose(b"newer")
    c.deliver()
    a = c.nodes["a"]
    a.core.read_index(1)  # a still believes it leads: it must not answer from its stale state
    c.tick(5 * FAST.leader_lease_ticks, only="a")
    assert a.read_states == []
    assert a.dropped_reads == [1]  # check-quorum deposed it: the read is failed, not served


def test_follower_read_gets_the_leaders_commit_index() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].propose(b"x")
    c.deliver()
    b = c.nodes["b"]
    b.core.read_index(42)
    requests = c.take(lambda m: isinstance(m, ReadIndexRequest))
    assert [(m.src, m.dst, m.ctx) for m in requests] == [("b", "a", 42)]
    c.net.extend(requests)
    c.deliver()
    assert b.read_states == [ReadState(42, c["a"].commit_index)]


def test_a_new_leader_answers_reads_only_after_committing_in_its_term() -> None:
    c = Cluster("abc")
    while c["a"].role is Role.FOLLOWER:
        c["a"].tick()
    c.deliver(lambda m: not isinstance(m, AppendEntries))
    a = c.nodes["a"]
    assert a.core.role is Role.LEADER and a.core.commit_index < a.core.last_index
    a.core.read_index(5)
    c.deliver(lambda m: not isinstance(m, AppendEntries) or not m.entries)
    assert a.read_states == []
    c.deliver()
    assert a.read_states == [ReadState(5, a.core.last_index)]  # at least its NOOP


def test_a_single_voter_answers_at_once() -> None:
    n = single_node("a")
    n.core.read_index(3)
    n.handle_ready()
    assert n.read_states == [ReadState(3, n.core.commit_index)]


def test_reads_without_a_leader_are_dropped() -> None:
    c = Cluster("abc")
    b = c.nodes["b"]
    b.core.read_index(9)
    b.handle_ready()
    assert b.dropped_reads == [9]


def test_forwarded_reads_are_dropped_when_the_leader_changes() -> None:
    c = Cluster("abc")
    c.elect("a")
    b = c.nodes["b"]
    b.core.read_index(1)
    c.take(lambda m: isinstance(m, ReadIndexRequest))  # lost on the way
    c.crash("a")
    c.tick(4 * FAST.heartbeat_timeout_ticks)
    assert b.dropped_reads == [1]


def test_reads_in_one_ready_share_one_heartbeat_round() -> None:
    c = Cluster("abcde")
    c.elect("a")
    a = c.nodes["a"]
    for ctx in range(100):
        a.core.read_index(ctx)
    beats: list[Message] = c.take(lambda m: isinstance(m, AppendEntries))
    assert len(beats) == 4
    c.net.extend(beats)
    c.deliver()
    assert [r.ctx for r in a.read_states] == list(range(100))


def test_a_forwarded_read_whose_answer_is_lost_fails_after_an_election_timeout() -> None:
    c = Cluster("abc")
    c.elect("a")
    b = c.nodes["b"]
    b.core.read_index(1)
    c.take(lambda m: isinstance(m, ReadIndexRequest))  # lost
    for _ in range(FAST.election_timeout_ticks - 1):
        c.tick(1)
    assert b.dropped_reads == []
    c.tick(1)
    assert b.dropped_reads == [1]
    assert c["b"].leader_id == "a"  # the leader is fine: only that read failed
