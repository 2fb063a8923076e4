"""The byte limits on replication: batches capped in bytes, bytes in flight per follower."""

from __future__ import annotations

from dataclasses import replace

import pytest

from konsul import config
from konsul.raft.log import ENTRY_OVERHEAD, RaftLog
from konsul.raft.messages import AppendEntries
from konsul.raft.runtime import core_config
from konsul.raft.types import Entry, EntryKind
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
