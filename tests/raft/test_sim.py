"""The deterministic simulator over the real Raft core: a few hundred seeds must find no
violation, a seed must replay bit for bit (also under another PYTHONHASHSEED), and the
checker's own pieces must fire on what they are meant to catch."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from konsul.raft.sim import SimConfig, campaign, run_seed
from konsul.raft.sim.__main__ import report
from konsul.raft.sim.disk import SimDisk
from konsul.raft.sim.invariants import Ack, Checker, Violation
from konsul.raft.sim.network import Network
from konsul.raft.types import Entry, EntryKind, HardState


def _assert_clean(nodes: int, seeds: range, **knobs: object) -> None:
    cfg = SimConfig(nodes=nodes, **knobs)  # type: ignore[arg-type]
    totals = campaign(seeds, cfg)
    reports = "\n\n".join(report(r, cfg) for r in totals.violations[:3])
    assert not totals.violations, f"{totals.summary()}\n{reports}"
    # The runs did real work: leaders were elected, writes acknowledged, reads checked.
    assert totals.elections >= 2 * len(seeds)
    assert totals.acked >= 50 * len(seeds)
    assert totals.reads >= 5 * len(seeds)
    print(totals.summary(), f"nodes={nodes}")


def test_200_seeds_of_3_nodes() -> None:
    _assert_clean(3, range(0, 200))


def test_100_seeds_of_5_nodes() -> None:
    _assert_clean(5, range(0, 100))


def test_seeds_with_pipelined_storage_writes() -> None:
    """etcd-style runtime: several Readies in flight, leader AppendEntries before its fsync."""
    _assert_clean(3, range(1000, 1030), pipeline=True)


def test_seeds_with_writes_larger_than_an_append_batch() -> None:
    """Writes padded past the simulator's 256-byte batch limit: each AppendEntries carries
    one, and a follower has one or two in flight (the 768-byte window)."""
    _assert_clean(3, range(2000, 2006), payload_bytes=600)


def test_same_seed_same_trace() -> None:
    cfg = SimConfig(nodes=5, trace_digest=True)
    first = run_seed(7, cfg)
    second = run_seed(7, SimConfig(nodes=5, trace_digest=True))
    other = run_seed(8, SimConfig(nodes=5, trace_digest=True))
    assert first.events > 1000
    assert first.digest == second.digest
    assert (first.commits, first.elections, first.ticks) == (
        second.commits, second.elections, second.ticks,
    )
    assert other.digest != first.digest


def test_replay_does_not_depend_on_hash_randomisation() -> None:
    """Set and dict-of-str iteration order changes with PYTHONHASHSEED: a replay must not."""
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-m", "konsul.raft.sim", "--seed", "11", "--nodes", "3"],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        ).stdout
        digests.add(out.rsplit("trace=", 1)[1].strip())
    assert len(digests) == 1


def test_cli_summary_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "konsul.raft.sim", "--seeds", "3", "--start", "40", "--nodes", "3"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert out.startswith("seeds=3 violations=0 elections=")
    assert "commits=" in out and "max_recovery_ms=" in out


# ---------------------------------------------------------------- the harness's own parts


def test_crash_keeps_only_synced_writes_and_perhaps_a_prefix() -> None:
    disk = SimDisk()
    disk.write_hard_state(HardState(1, "n1"))
    disk.write_entries([Entry(1, 1, EntryKind.NOOP)])
    disk.sync(disk.barrier())
    disk.write_entries(
        [Entry(2, 1, EntryKind.COMMAND, b"w1"), Entry(3, 1, EntryKind.COMMAND, b"w2")]
    )
    disk.write_hard_state(HardState(2, None))
    assert disk.written.last_index == 3
    survivors = set()
    for seed in range(40):
        trial = SimDisk()
        trial.durable = disk.durable.copy()
        trial.written = disk.written.copy()
        trial._pending = list(disk._pending)
        trial.crash(random.Random(seed))
        survivors.add((trial.written.last_index, trial.written.hard_state.term))
        assert trial.written.hard_state.vote in ("n1", None)
    assert (1, 1) in survivors  # everything unsynced lost
    assert all(last >= 1 for last, _ in survivors)  # never anything synced
    assert (3, 2) in survivors or (3, 1) in survivors  # sometimes a prefix reached the disk
    assert (1, 2) not in survivors  # a prefix, never a later write without an earlier one


def test_network_partition_and_one_way_cut() -> None:
    net = Network(random.Random(1))
    net.isolate(["a"], ["b"], one_way=True)
    net.send(0, "a", "b", "x")
    net.send(0, "b", "a", "y")
    assert [m for _, _, m in net.due(10)] == ["y"]
    net.heal()
    net.send(10, "a", "b", "z")
    assert [m for _, _, m in net.due(20)] == ["z"]


def test_checker_catches_two_leaders_and_two_votes() -> None:
    checker = Checker()
    checker.observe_leader("n1", 3)
    with pytest.raises(Violation, match="election-safety"):
        checker.observe_leader("n2", 3)
    checker.vote_granted("n3", 4, "n1")
    checker.vote_granted("n3", 4, "n1")  # a duplicated response is the same vote
    with pytest.raises(Violation, match="one-vote-per-term"):
        checker.vote_granted("n3", 4, "n2")


def test_checker_catches_divergent_logs_applies_and_stale_reads() -> None:
    checker = Checker()
    checker.entries_written("n1", 0, [Entry(1, 1, EntryKind.COMMAND, b"w1")])
    with pytest.raises(Violation, match="log-matching"):
        checker.entries_written("n2", 0, [Entry(1, 1, EntryKind.COMMAND, b"w2")])
    checker.applied("n1", Entry(1, 1, EntryKind.COMMAND, b"w1"), 11)
    with pytest.raises(Violation, match="state-machine-safety"):
        checker.applied("n2", Entry(1, 2, EntryKind.COMMAND, b"w3"), 12)
    checker.acknowledged(Ack(1, 1, 1, "n1", 0))
    with pytest.raises(Violation, match="linearizable-read"):
        checker.read_index_given("n2", 1, 0, checker.acked_max_index)
    with pytest.raises(Violation, match="leader-completeness"):
        checker.leader_complete("n3", 2, 1, lambda i: None, 0, None)
