"""The byte limits on replication: batches capped in bytes, bytes in flight per follower."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from konsul import config
from konsul.raft.log import ENTRY_OVERHEAD, RaftLog
from konsul.raft.messages import AppendEntries
from konsul.raft.runtime import core_config
from konsul.raft.types import Entry, EntryKind, SnapshotMeta
from tests.raft.core_harness import FAST, Cluster


def entries(*sizes: int) -> list[Entry]:
    return [Entry(i, 1, EntryKind.COMMAND, b"x" * n) for i, n in enumerate(sizes, start=1)]


def test_a_batch_stops_before_the_entry_that_would_pass_the_byte_limit() -> None:
    log = RaftLog(None, entries(100, 100, 100, 100))
    batch, size = log.slice(0, 64, 2 * (100 + ENTRY_OVERHEAD) + 50)
    assert [e.index for e in batch] == [1, 2]
    assert size == 2 * (100 + ENTRY_OVERHEAD)
    batch, size = log.slice(2, 64, 10**6)
    assert [e.index for e in batch] == [3, 4] and size == 2 * (100 + ENTRY_OVERHEAD)


def test_an_entry_larger_than_the_limit_goes_alone() -> None:
    log = RaftLog(None, entries(5000, 10, 10))
    batch, size = log.slice(0, 64, 1000)
    assert [e.index for e in batch] == [1] and size == 5000 + ENTRY_OVERHEAD
    batch, _ = log.slice(1, 64, 1000)
    assert [e.index for e in batch] == [2, 3]


def test_sizes_stay_right_across_truncation_compaction_and_restore() -> None:
    """The log sizes each entry once, lazily: every way the log changes must keep it right."""
    rng = random.Random(5)
    log = RaftLog(None, entries(*(rng.randrange(200) for _ in range(30))))
    for _ in range(300):
        op = rng.randrange(4)
        if op == 0:  # append
            last = log.last_index
            log.append([Entry(last + 1, 2, EntryKind.COMMAND, b"y" * rng.randrange(300))])
        elif op == 1 and log.last_index > log.base + 2:  # truncate the tail
            log.truncate(rng.randrange(log.base + 2, log.last_index + 1))
        elif op == 2 and log.last_index > log.base + 1:  # compact (as if applied)
            log.applying = log.last_index
            index = rng.randrange(log.base + 1, log.last_index + 1)
            log.compact(SnapshotMeta(index, log.term_at(index) or 0), rng.randrange(5))
        after = rng.randrange(log.base, log.last_index + 1)
        count, limit = rng.randrange(1, 20), rng.randrange(1, 2000)
        batch, size = log.slice(after, count, limit)
        expected: list[Entry] = []
        for e in log.entries[after - log.base : after - log.base + count]:
            cost = sum(len(x.data) + ENTRY_OVERHEAD for x in expected)
            if expected and cost + len(e.data) + ENTRY_OVERHEAD > limit:
                break
            expected.append(e)
        assert list(batch) == expected
        assert size == sum(len(x.data) + ENTRY_OVERHEAD for x in expected)
    log.restore(SnapshotMeta(log.last_index + 5, 3))
    log.append(entries_from(log.last_index + 1, 40, 50))
    assert log.slice(log.base, 64, 1000)[1] == 40 + 50 + 2 * ENTRY_OVERHEAD


def entries_from(first: int, *sizes: int) -> list[Entry]:
    return [Entry(i, 3, EntryKind.COMMAND, b"z" * n) for i, n in enumerate(sizes, start=first)]


def test_a_follower_gets_no_more_bytes_than_the_limit_before_it_acknowledges() -> None:
    cfg = replace(FAST, max_append_entries=64, max_append_bytes=300, max_inflight=8,
                  max_inflight_bytes=700)
    c = Cluster("abc", cfg)
    c.elect("a")
    for i in range(20):
        c["a"].propose(b"%03d" % i + b"." * 97)  # 100 bytes: 116 with the overhead
    sent = c.take(lambda m: isinstance(m, AppendEntries) and m.dst == "b")
    # 232 bytes a message; the window is full once 700 are in flight (the last one passes it)
    assert [len(m.entries) for m in sent] == [2, 2, 2, 2]
    c.net.extend(sent)
    c.deliver()  # acknowledgements free the window: the rest follows at their pace
    assert c["b"].last_index == c["a"].last_index == 22
    assert c.nodes["b"].disk.log == c.nodes["a"].disk.log


def test_settings_default_to_etcds_limits_and_reach_the_core() -> None:
    settings = config.load({})
    assert settings.raft.max_append_bytes == 1 << 20
    assert settings.raft.max_inflight_bytes == 4 << 20
    tuned = config.load(
        {"KONSUL_RAFT_MAX_APPEND_BYTES": "65536", "KONSUL_RAFT_MAX_INFLIGHT_BYTES": "262144"}
    )
    core = core_config(tuned.raft)
    assert (core.max_append_bytes, core.max_inflight_bytes) == (65536, 262144)


def test_the_inflight_limit_cannot_be_below_one_message() -> None:
    with pytest.raises(config.ConfigError, match="KONSUL_RAFT_MAX_INFLIGHT_BYTES"):
        config.load(
            {"KONSUL_RAFT_MAX_APPEND_BYTES": "65536", "KONSUL_RAFT_MAX_INFLIGHT_BYTES": "1000"}
        )
    with pytest.raises(config.ConfigError, match="KONSUL_RAFT_MAX_APPEND_BYTES"):
        config.load({"KONSUL_RAFT_MAX_APPEND_BYTES": "0"})
