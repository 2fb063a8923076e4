"""Log compaction and InstallSnapshot: chunked transfer, resume, restart from a snapshot."""

from __future__ import annotations

import random

import pytest

from konsul.raft.core import RaftCore, Role
from konsul.raft.messages import AppendEntries, InstallSnapshot, SnapshotResponse
from konsul.raft.types import SnapshotMeta
from tests.raft.core_harness import FAST, Cluster


def lagging_cluster(writes: int = 20) -> Cluster:
    """a leads; c was cut off for ``writes`` commands; a has compacted its log past them."""
    c = Cluster("abc")
    c.elect("a")
    c.partition("ab", "c")
    for i in range(writes):
        c["a"].propose(b"w%d" % i)
        c.deliver()
    c.tick(FAST.commit_ticks)
    c.nodes["a"].take_snapshot(trailing=2)
    assert c["a"].first_index > c["c"].last_index + 1
    return c


def test_a_follower_behind_the_log_gets_the_snapshot_in_chunks_and_resumes() -> None:
    c = lagging_cluster()
    snap = c["a"].snapshot_meta
    assert snap is not None
    size = len(c.nodes["a"].snapshots.blobs[(snap.index, snap.term)])
    chunks: list[InstallSnapshot] = []

    def watch(m: object) -> bool:
        if isinstance(m, InstallSnapshot):
            chunks.append(m)
        return True

    c.heal()
    for _ in range(4 * FAST.commit_ticks):
        c.tick(1, settle=False)
        c.deliver(watch)
    assert len(chunks) == -(-size // FAST.snapshot_chunk_bytes)  # ceil: 8-byte chunks, in order
    assert [m.offset for m in chunks] == list(range(0, size, FAST.snapshot_chunk_bytes))
    assert [m.done for m in chunks] == [False] * (len(chunks) - 1) + [True]
    assert c.nodes["c"].restored_from == snap
    assert c.nodes["c"].commands() == c.nodes["a"].commands()
    c["a"].propose(b"after")  # replication resumes after the snapshot
    c.deliver()
    c.tick(FAST.commit_ticks)
    assert c.nodes["c"].commands()[-1] == b"after"
    assert c.nodes["c"].disk.log[0].index == snap.index + 1


def test_the_receiving_core_emits_the_assembled_snapshot_once() -> None:
    c = lagging_cluster()
    c.heal()
    c.tick(5 * FAST.commit_ticks)
    meta = c["a"].snapshot_meta
    assert meta is not None
    received = c.nodes["c"].received
    assert [s.meta for s in received] == [meta]
    assert received[0].data == c.nodes["a"].snapshots.blobs[(meta.index, meta.term)]
    assert c["c"].first_index == meta.index + 1 and c["c"].commit_index >= meta.index
    assert c["c"].committed_configuration == meta.config


def test_a_follower_within_the_trailing_entries_gets_entries_not_a_snapshot() -> None:
    c = Cluster("abc")
    c.elect("a")
    c.partition("ab", "c")
    c["a"].propose(b"one")
    c.deliver()
    c.tick(FAST.commit_ticks)
    c.nodes["a"].take_snapshot(trailing=10)
    assert c["a"].first_index <= c["c"].last_index + 1
    c.heal()
    c.tick(4 * FAST.commit_ticks)
    assert not c.take(lambda m: isinstance(m, InstallSnapshot))
    assert c.nodes["c"].restored_from is None
    assert c.nodes["c"].commands() == [b"one"]


def test_a_lost_chunk_is_sent_again() -> None:
    c = lagging_cluster()
    c.heal()
    lost: list[InstallSnapshot] = []

    def lose_second_chunk(m: object) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset == FAST.snapshot_chunk_bytes and not lost:
            lost.append(m)
            return False  # held back, then thrown away below
        return True

    for _ in range(10 * FAST.heartbeat_timeout_ticks):
        c.tick(1, settle=False)
        c.deliver(lose_second_chunk)
        c.net = [m for m in c.net if m not in lost]
        if c.nodes["c"].restored_from is not None:
            break
    assert len(lost) == 1
    assert c.nodes["c"].commands() == c.nodes["a"].commands()


def test_a_newer_snapshot_replaces_a_transfer_in_progress() -> None:
    c = lagging_cluster()
    c.heal()
    first: list = []  # type: ignore[type-arg]
    while not first:
        c.tick(1, settle=False)
        first = c.take(lambda m: isinstance(m, InstallSnapshot))
    assert first[0].offset == 0
    for i in range(5):
        c["a"].propose(b"more%d" % i)
        c.deliver(lambda m: m.dst != "c")
    c.tick(FAST.commit_ticks, only="ab")
    newer = c.nodes["a"].take_snapshot()
    old = first[0].meta
    del c.nodes["a"].snapshots.blobs[(old.index, old.term)]  # pruned by retention
    c.net.extend(first)
    for _ in range(6 * FAST.commit_ticks):
        c.tick(1)
    assert c.nodes["c"].restored_from == newer
    assert c.nodes["c"].commands() == c.nodes["a"].commands()


def test_a_follower_that_holds_the_snapshot_point_keeps_its_log() -> None:
    c = Cluster("abc")
    c.elect("a")
    c["a"].propose(b"x")
    c.deliver()
    meta = SnapshotMeta(c["a"].last_index, c["a"].term, c["a"].committed_configuration)
    b = c.nodes["b"]
    b.core.step(InstallSnapshot("a", "b", c["a"].term, meta, 0, b"whatever", False))
    out = b.handle_ready()
    assert out == [SnapshotResponse("b", "a", meta.term, meta.index, 0, True)]
    assert b.restored_from is None and b.commands() == [b"x"]


def test_restart_from_a_snapshot_and_the_entries_after_it() -> None:
    c = Cluster("abc")
    c.elect("a")
    for i in range(6):
        c["a"].propose(b"%d" % i)
        c.deliver()
    c.tick(FAST.commit_ticks)
    b = c.nodes["b"]
    meta = b.take_snapshot(trailing=0)
    for i in range(6, 9):
        c["a"].propose(b"%d" % i)
        c.deliver()
    c.tick(FAST.commit_ticks)
    b.restart()
    core = b.core
    assert core.snapshot_meta == meta and core.first_index == meta.index + 1
    assert core.commit_index == meta.index
    assert core.configuration == meta.config
    c.tick(FAST.commit_ticks)
    assert b.commands() == [b"%d" % i for i in range(9)]
    assert b.applied[0].index == meta.index + 1  # only the entries after the snapshot replay


def test_restart_keeps_trailing_entries_in_front_of_the_snapshot() -> None:
    c = Cluster("abc")
    c.elect("a")
    for i in range(8):
        c["a"].propose(b"%d" % i)
        c.deliver()
    c.tick(FAST.commit_ticks)
    a = c.nodes["a"]
    meta = a.take_snapshot(trailing=3)
    a.restart()
    assert a.core.first_index == meta.index - 2
    assert a.core.term_at(meta.index) == meta.term
    assert a.core.term_at(meta.index - 3) is None  # the term before the kept entries is unknown


def test_compaction_is_refused_past_what_was_applied() -> None:
    c = Cluster("abc")
    c.elect("a")
    core: RaftCore = c["a"]
    with pytest.raises(ValueError):
        core.compact(SnapshotMeta(core.last_index + 5, core.term), 0)


def test_chunks_from_a_restarted_transfer_are_reassembled_correctly() -> None:
    """Chunks arriving out of order, duplicated or from an older transfer never corrupt it."""
    c = lagging_cluster(writes=40)
    c.heal()
    rng = random.Random(1)
    for _ in range(40 * FAST.commit_ticks):
        c.tick(1, settle=False)
        c.pump()
        msgs = c.net
        c.net = []
        msgs += [m for m in msgs if isinstance(m, (InstallSnapshot, SnapshotResponse))
                 and rng.random() < 0.3]
        rng.shuffle(msgs)
        for m in msgs:
            if isinstance(m, AppendEntries) or rng.random() > 0.2:
                c[m.dst].step(m)
                c.pump()
        if c.nodes["c"].restored_from is not None:
            break
    c.tick(4 * FAST.commit_ticks)
    assert c.nodes["c"].restored_from is not None
    assert c.nodes["c"].commands() == c.nodes["a"].commands()


def test_a_follower_left_with_half_a_snapshot_still_campaigns() -> None:
    c = lagging_cluster()
    c.heal()
    while c["c"]._incoming is None:
        c.tick(1, settle=False)
        c.deliver(lambda m: not isinstance(m, InstallSnapshot) or m.offset == 0)
    assert c["c"]._incoming is not None  # mid-transfer
    c.crash("a")
    c.crash("b")
    c.drop_all()
    for _ in range(3 * FAST.heartbeat_timeout_ticks):
        c["c"].tick()
    assert c["c"].role is not Role.FOLLOWER  # it tries (it cannot win: its log is behind)


def test_a_repeated_answer_does_not_start_a_second_stream_of_chunks() -> None:
    # A chunk sent again (its answer was late, or a copy waited in a queue while the follower
    # was away) is answered twice. Each answer used to send the next chunk: from then on every
    # chunk went twice, and every further repeat added a stream (a 0.5 GB snapshot, #16).
    c = lagging_cluster()
    snap = c["a"].snapshot_meta
    assert snap is not None
    size = len(c.nodes["a"].snapshots.blobs[(snap.index, snap.term)])
    sent: list[InstallSnapshot] = []
    doubled = False

    def watch(m: object) -> bool:
        nonlocal doubled
        if isinstance(m, InstallSnapshot):
            sent.append(m)
        if isinstance(m, SnapshotResponse) and not m.done and not doubled:
            doubled = True
            c.net.append(m)  # delivered twice
        return True

    c.heal()
    for _ in range(10 * FAST.commit_ticks):
        c.tick(1, settle=False)
        c.deliver(watch)
        if c.nodes["c"].restored_from is not None:
            break
    assert doubled and c.nodes["c"].restored_from == snap
    assert len(sent) == -(-size // FAST.snapshot_chunk_bytes)  # each chunk once
