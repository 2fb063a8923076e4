"""What a member knows of how far behind it is (``leader_commit``) and which followers a leader
hears from (``active_peers``): readiness and the check assignment are built on them."""

from __future__ import annotations

from konsul.raft.messages import AppendEntries
from tests.raft.core_harness import Cluster


def test_a_follower_far_behind_knows_the_leaders_commit_beyond_its_own_log() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.crash("c")
    for i in range(20):
        c["a"].propose(b"%d" % i)
    c.deliver()
    commit = c["a"].commit_index
    assert c["a"].leader_commit == commit
    c.recover("c")
    # c gets the leader's heartbeat, answers it, and receives one batch of at most 4 entries
    # (FAST.max_append_entries): its log holds far less than what is committed
    follower = c["c"]
    for _ in range(10):
        c.tick(settle=False)
        batches = [m for m in c.take(lambda m: m.dst == "c") if isinstance(m, AppendEntries)]
        if any(m.entries for m in batches):
            follower.step(next(m for m in batches if m.entries))
            c.nodes["c"].handle_ready()
            break
        for m in batches:
            follower.step(m)
        c.deliver(lambda m: m.dst != "c")
    assert follower.commit_index < commit, "c should not have caught up yet"
    assert follower.leader_commit == commit
    c.tick(20)  # the pipeline restarts after what was taken away
    assert c["c"].commit_index == c["c"].leader_commit == commit


def test_a_leader_counts_as_active_only_the_followers_that_answer_within_the_lease() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.tick(2)
    assert sorted(c["a"].active_peers()) == ["b", "c"]
    assert c["b"].active_peers() == []  # only a leader knows
    c.crash("c")
    c.tick(12)  # FAST.leader_lease_ticks = 10
    assert c["a"].active_peers() == ["b"]
    c.recover("c")
    c.tick(4)
    assert sorted(c["a"].active_peers()) == ["b", "c"]


def test_a_restarted_follower_knows_the_leaders_commit_only_once_an_append_says_it() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.crash("c")
    for i in range(10):
        c["a"].propose(b"%d" % i)
    c.deliver()
    leader = c["a"]
    c.nodes["c"].restart()  # (not yet reachable: nothing delivered to it)
    follower = c["c"]
    assert not follower.knows_leader_commit and follower.leader_commit < leader.commit_index
    # An append it must refuse (its log lacks the previous entry) still says what is committed
    follower.step(AppendEntries("a", "c", leader.term, leader.last_index, leader.term, (),
                                leader.commit_index))
    assert follower.knows_leader_commit and follower.leader_commit == leader.commit_index
    assert leader.knows_leader_commit  # a leader knows its own
