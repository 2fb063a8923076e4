"""WriteAheadLog on real files: round trips, rollover, truncation, compaction, reset, hard state."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from konsul.raft.types import Entry, EntryKind, HardState
from konsul.storage.wal import HARD_STATE_FILE, WriteAheadLog, segment_name


def make(start: int, stop: int, term: int = 1, size: int = 16) -> list[Entry]:
    """Entries ``start..stop-1`` whose data says which index and term they are."""
    kinds = (EntryKind.COMMAND, EntryKind.NOOP, EntryKind.CONFIG)
    return [
        Entry(i, term, kinds[i % 3], f"{i}/{term}:".encode().ljust(size, b"x"))
        for i in range(start, stop)
    ]


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".wal")


def test_new_directory_is_created_and_empty(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "wal"
    with WriteAheadLog.open(directory) as wal:
        assert directory.is_dir()
        assert (wal.first_index, wal.last_index) == (1, 0)
        assert wal.entries() == []
        assert wal.hard_state == HardState()
        assert wal.recovery.clean and wal.recovery.records_kept == 0


def test_append_sync_reopen_round_trip(tmp_path: Path) -> None:
    written = [*make(1, 50), Entry(50, 2, EntryKind.COMMAND, b""), *make(51, 60, 2, 100_000)]
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(written[:10])
        wal.append(written[10:])
        wal.sync()
        assert wal.last_index == 59
        assert wal.entries() == written
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery.clean and wal.recovery.records_kept == 59
        assert (wal.first_index, wal.last_index) == (1, 59)
        assert wal.entries() == written
        wal.append(make(60, 61, 3))
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == [*written, *make(60, 61, 3)]


def test_append_must_be_contiguous_and_writes_nothing_otherwise(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        with pytest.raises(ValueError, match="not contiguous"):
            wal.append(make(2, 4))
        wal.append(make(1, 4))
        with pytest.raises(ValueError, match="not contiguous"):
            wal.append([*make(4, 6), *make(7, 8)])  # gap inside the batch
        wal.append([])
        assert wal.last_index == 3
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == make(1, 4)


def test_segments_roll_over_at_the_configured_size(tmp_path: Path) -> None:
    limit = 1000
    written = make(1, 200, size=40)
    with WriteAheadLog.open(tmp_path, segment_bytes=limit) as wal:
        for start in range(0, 199, 23):  # batches that straddle segment boundaries
            wal.append(written[start : start + 23])
        wal.sync()
    names = segment_files(tmp_path)
    assert len(names) > 5
    assert names[0] == segment_name(1)
    for name in names:
        assert (tmp_path / name).stat().st_size <= limit
    with WriteAheadLog.open(tmp_path, segment_bytes=limit) as wal:
        assert wal.recovery.clean
        assert wal.entries() == written
    # Each file is named by the index of its first record.
    with WriteAheadLog.open(tmp_path, segment_bytes=limit) as wal:
        firsts = [int(n.split(".")[0]) for n in names]
        for first, nxt in zip(firsts, [*firsts[1:], wal.last_index + 1], strict=True):
            assert first < nxt


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    written = [*make(1, 3), Entry(3, 1, EntryKind.COMMAND, b"z" * 5000), *make(4, 6)]
    with WriteAheadLog.open(tmp_path, segment_bytes=1000) as wal:
        wal.append(written)
        wal.sync()
    assert segment_files(tmp_path) == [segment_name(1), segment_name(3), segment_name(4)]
    with WriteAheadLog.open(tmp_path, segment_bytes=1000) as wal:
        assert wal.entries() == written


def test_truncate_from_within_the_active_segment(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(make(1, 20))
        wal.sync()
        wal.truncate_from(15)
        assert wal.last_index == 14
        wal.append(make(15, 18, term=2))
        wal.sync()
        assert wal.entries() == make(1, 15) + make(15, 18, 2)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery.clean
        assert wal.entries() == make(1, 15) + make(15, 18, 2)


def test_truncate_from_across_segments(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        wal.append(make(1, 100, size=30))
        wal.sync()
        before = segment_files(tmp_path)
        wal.truncate_from(30)
        wal.sync()
        after = segment_files(tmp_path)
        assert len(after) < len(before)
        assert after == [n for n in before if int(n.split(".")[0]) <= 30]
        wal.append(make(30, 60, term=2, size=30))
        wal.sync()
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        assert wal.recovery.clean
        assert wal.entries() == make(1, 30, size=30) + make(30, 60, 2, 30)


def test_truncate_at_a_segment_start_and_of_everything(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        wal.append(make(1, 100, size=30))
        second = int(segment_files(tmp_path)[1].split(".")[0])
        wal.truncate_from(second)
        wal.sync()
        assert wal.last_index == second - 1
        assert segment_files(tmp_path)[-1] == segment_name(second)  # kept, empty
        wal.truncate_from(1)
        wal.sync()
        assert (wal.first_index, wal.last_index) == (1, 0)
        assert wal.entries() == []
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        assert (wal.first_index, wal.last_index) == (1, 0)
        wal.append(make(1, 3, term=5))
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == make(1, 3, 5)


def test_truncate_bounds(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        wal.append(make(1, 100, size=30))
        wal.truncate_from(100)  # past the end: nothing to drop
        assert wal.last_index == 99
        wal.compact(50)
        first = wal.first_index
        assert first > 1
        with pytest.raises(ValueError, match="log starts at"):
            wal.truncate_from(first - 1)


def test_truncate_is_durable_at_the_next_sync(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=400) as wal:
        wal.append(make(1, 80, size=30))
        wal.sync()
        wal.truncate_from(10)
        wal.sync()
        # Sizes on disk already say so, without closing the log.
        total = sum((tmp_path / n).stat().st_size for n in segment_files(tmp_path))
        assert total == 9 * (8 + len(_payload_len_probe()))


def _payload_len_probe() -> bytes:
    import msgpack

    e = make(1, 2, size=30)[0]
    packed: bytes = msgpack.packb((e.index, e.term, int(e.kind), e.data))
    return packed


def test_compact_deletes_whole_segments_only(tmp_path: Path) -> None:
    written = make(1, 200, size=30)
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        wal.append(written)
        wal.sync()
        firsts = [int(n.split(".")[0]) for n in segment_files(tmp_path)]
        wal.compact(firsts[3])  # segment 3 holds index firsts[3] and more: it stays
        assert wal.first_index == firsts[3]
        assert segment_files(tmp_path)[0] == segment_name(firsts[3])
        assert wal.entries() == written[firsts[3] - 1 :]
        wal.compact(firsts[5] - 1)  # segment 4 ends exactly at firsts[5] - 1: it goes
        assert wal.first_index == firsts[5]
        wal.compact(10_000)  # never the active segment: the log must know where it resumes
        assert wal.first_index == firsts[-1]
        assert wal.last_index == 199
        wal.sync()
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        assert wal.recovery.clean
        assert (wal.first_index, wal.last_index) == (firsts[-1], 199)
        assert wal.entries() == written[firsts[-1] - 1 :]
        wal.append(make(200, 210, size=30))


def test_reset_drops_everything_and_resumes_after_the_snapshot(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        wal.append(make(1, 100, size=30))
        wal.sync()
        wal.reset(1000, 7)
        assert (wal.first_index, wal.last_index) == (1001, 1000)
        assert wal.entries() == []
        assert segment_files(tmp_path) == [segment_name(1001)]
        with pytest.raises(ValueError, match="not contiguous"):
            wal.append(make(100, 101))
    # Durable on return, with nothing appended since.
    with WriteAheadLog.open(tmp_path, segment_bytes=500) as wal:
        assert (wal.first_index, wal.last_index) == (1001, 1000)
        wal.append(make(1001, 1010, term=7))
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == make(1001, 1010, 7)


def test_hard_state_survives_reopen_and_leaves_no_temp_file(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        wal.save_hard_state(HardState(3, "node-b"))
        assert wal.hard_state == HardState(3, "node-b")
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.hard_state == HardState(3, "node-b")
        wal.save_hard_state(HardState(4, None))
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.hard_state == HardState(4, None)
    assert sorted(os.listdir(tmp_path)) == [HARD_STATE_FILE]


def test_an_interrupted_hard_state_save_keeps_the_previous_one(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        wal.save_hard_state(HardState(2, "a"))
    # A crash between writing the temp file and the rename leaves this behind.
    (tmp_path / (HARD_STATE_FILE + ".tmp")).write_bytes(b"half a hard st")
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.hard_state == HardState(2, "a")
        assert wal.recovery.clean
    assert not (tmp_path / (HARD_STATE_FILE + ".tmp")).exists()


def test_unreadable_hard_state_is_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(make(1, 5, term=3))
        wal.save_hard_state(HardState(6, "x"))
        wal.sync()
    path = tmp_path / HARD_STATE_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR, logger="konsul.storage"):
        wal = WriteAheadLog.open(tmp_path)
    with wal:
        assert wal.recovery.hard_state_error is not None
        assert not wal.recovery.clean
        assert wal.hard_state == HardState(3, None)  # the last log term, no vote
        assert wal.entries() == make(1, 5, 3)
    assert any("hard state" in r.getMessage() for r in caplog.records)


def test_entries_reflect_changes_without_reopening(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=300) as wal:
        wal.append(make(1, 40))
        assert wal.entries() == make(1, 40)
        wal.truncate_from(20)
        assert wal.entries() == make(1, 20)
        wal.append(make(20, 25, term=2))
        assert wal.entries() == make(1, 20) + make(20, 25, 2)


def test_sync_from_a_worker_thread(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=300) as wal:
        for start in range(1, 200, 10):
            wal.append(make(start, start + 10))
            worker = threading.Thread(target=wal.sync)
            worker.start()
            worker.join(timeout=30)
            assert not worker.is_alive()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == make(1, 201)


def test_closed_log_refuses_use_and_close_is_idempotent(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path)
    wal.append(make(1, 2))
    wal.close()
    wal.close()
    with pytest.raises(ValueError, match="closed"):
        wal.append(make(2, 3))
    with pytest.raises(ValueError, match="closed"):
        wal.sync()


def test_unexpected_files_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("hello")
    (tmp_path / "junk.wal").write_bytes(b"not a segment name")
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery.clean and wal.last_index == 0
        wal.append(make(1, 3))
    assert (tmp_path / "README").exists() and (tmp_path / "junk.wal").exists()
