"""Recovery from damage: torn tails, garbled records, gaps. Open cuts and reports, never fails."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from konsul.raft.types import Entry, EntryKind
from konsul.storage.wal import WriteAheadLog, segment_name

HEADER = 8


def make(start: int, stop: int, term: int = 1, size: int = 24) -> list[Entry]:
    return [
        Entry(i, term, EntryKind.COMMAND, f"{i}:".encode().ljust(size, b"d"))
        for i in range(start, stop)
    ]


def record(index: int, term: int, data: bytes) -> bytes:
    """A record exactly as the WAL frames one (to forge valid-checksum damage)."""
    payload: bytes = msgpack.packb((index, term, 0, data))
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def record_offsets(path: Path) -> list[int]:
    raw = path.read_bytes()
    offsets, pos = [], 0
    while pos < len(raw):
        offsets.append(pos)
        (length,) = struct.unpack_from("<I", raw, pos)
        pos += HEADER + length
    return offsets


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix == ".wal")


def write_log(directory: Path, count: int, segment_bytes: int = 64 << 20) -> list[Entry]:
    written = make(1, count + 1)
    with WriteAheadLog.open(directory, segment_bytes=segment_bytes) as wal:
        wal.append(written)
        wal.sync()
    return written


@pytest.mark.parametrize("keep_of_last", [0, 3, HEADER, HEADER + 5], ids=lambda n: f"cut{n}")
def test_torn_tail_keeps_every_record_before_it(
    tmp_path: Path, keep_of_last: int, caplog: pytest.LogCaptureFixture
) -> None:
    written = write_log(tmp_path, 50)
    (path,) = segments(tmp_path)
    last = record_offsets(path)[-1]
    full = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(last + keep_of_last)  # the crash cut the last record mid-way
    with caplog.at_level(logging.WARNING, logger="konsul.storage"):
        wal = WriteAheadLog.open(tmp_path)
    with wal:
        assert wal.entries() == written[:49]
        assert wal.last_index == 49
        report = wal.recovery
        assert report.records_kept == 49
        assert report.bytes_dropped == keep_of_last
        if keep_of_last:
            assert (report.segment, report.offset) == (path.name, last)
            assert report.reason is not None and "torn" in report.reason
            assert any("torn" in r.getMessage() for r in caplog.records)
        else:  # a cut exactly between records is no damage at all
            assert report.clean
        assert path.stat().st_size == last < full
        wal.append(make(50, 60, term=2))
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery.clean
        assert wal.entries() == written[:49] + make(50, 60, 2)


def test_garbled_record_in_the_last_segment(tmp_path: Path) -> None:
    written = write_log(tmp_path, 600, segment_bytes=4000)
    last_segment = segments(tmp_path)[-1]
    first_in_last = int(last_segment.stem)
    offsets = record_offsets(last_segment)
    victim = first_in_last + len(offsets) // 2  # a record in the middle of the segment
    at = offsets[victim - first_in_last]
    size_before = last_segment.stat().st_size
    raw = bytearray(last_segment.read_bytes())
    raw[at + HEADER + 3] ^= 0x5A
    last_segment.write_bytes(bytes(raw))
    with WriteAheadLog.open(tmp_path, segment_bytes=4000) as wal:
        assert wal.entries() == written[: victim - 1]
        report = wal.recovery
        assert report.reason == "checksum mismatch"
        assert (report.segment, report.offset) == (last_segment.name, at)
        assert report.records_kept == victim - 1
        assert report.bytes_dropped == size_before - at
        assert report.segments_deleted == ()
    assert last_segment.stat().st_size == at


def test_garbled_record_in_an_earlier_segment_deletes_the_later_ones(tmp_path: Path) -> None:
    written = write_log(tmp_path, 600, segment_bytes=4000)
    files = segments(tmp_path)
    assert len(files) >= 4
    damaged = files[1]
    offsets = record_offsets(damaged)
    at = offsets[len(offsets) // 2]
    victim = int(damaged.stem) + len(offsets) // 2
    expected_dropped = damaged.stat().st_size - at + sum(f.stat().st_size for f in files[2:])
    raw = bytearray(damaged.read_bytes())
    raw[at + 2] ^= 0xFF  # the length field: the framing itself is garbled
    damaged.write_bytes(bytes(raw))
    with WriteAheadLog.open(tmp_path, segment_bytes=4000) as wal:
        assert wal.entries() == written[: victim - 1]
        assert wal.last_index == victim - 1
        report = wal.recovery
        assert report.segment == damaged.name and report.offset == at
        assert report.segments_deleted == tuple(f.name for f in files[2:])
        assert report.bytes_dropped == expected_dropped
        wal.append(make(victim, victim + 5, term=2))  # the log carries on from the cut
        wal.sync()
    assert segments(tmp_path) == files[:2]
    with WriteAheadLog.open(tmp_path, segment_bytes=4000) as wal:
        assert wal.recovery.clean
        assert wal.entries() == written[: victim - 1] + make(victim, victim + 5, 2)


def test_zeroed_tail_is_dropped(tmp_path: Path) -> None:
    written = write_log(tmp_path, 20)
    (path,) = segments(tmp_path)
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\0" * 4096)  # what a filesystem may show past the last write after a crash
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == written
        assert wal.recovery.bytes_dropped == 4096 and wal.recovery.offset == size
    assert path.stat().st_size == size


def test_valid_checksum_but_wrong_index_is_cut(tmp_path: Path) -> None:
    written = write_log(tmp_path, 10)
    (path,) = segments(tmp_path)
    with path.open("ab") as f:
        f.write(record(12, 1, b"skips 11"))
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == written
        assert wal.recovery.reason == "index 12 where 11 was expected"


def test_valid_checksum_but_malformed_payload_is_cut(tmp_path: Path) -> None:
    written = write_log(tmp_path, 10)
    (path,) = segments(tmp_path)
    payload: bytes = msgpack.packb((11, 1, 9, b"no such kind"))
    with path.open("ab") as f:
        f.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == written
        assert wal.recovery.reason == "malformed payload"


def test_a_missing_segment_cuts_the_log_at_the_gap(tmp_path: Path) -> None:
    written = write_log(tmp_path, 600, segment_bytes=4000)
    files = segments(tmp_path)
    files[2].unlink()
    with WriteAheadLog.open(tmp_path, segment_bytes=4000) as wal:
        assert wal.last_index == int(files[2].stem) - 1
        assert wal.entries() == written[: wal.last_index]
        report = wal.recovery
        assert report.reason is not None and "expected" in report.reason
        assert report.segment == files[3].name and report.offset == 0
        assert report.segments_deleted == tuple(f.name for f in files[3:])
    assert segments(tmp_path) == files[:2]


def test_a_segment_whose_records_disagree_with_its_name(tmp_path: Path) -> None:
    (tmp_path / segment_name(5)).write_bytes(record(6, 1, b"a") + record(7, 1, b"b"))
    with WriteAheadLog.open(tmp_path) as wal:
        assert (wal.first_index, wal.last_index) == (5, 4)
        assert wal.recovery.reason == "index 6 where 5 was expected"
        wal.append([Entry(5, 1, EntryKind.NOOP)])
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries() == [Entry(5, 1, EntryKind.NOOP)]


def test_damage_is_cut_once_then_the_log_is_clean(tmp_path: Path) -> None:
    write_log(tmp_path, 30)
    (path,) = segments(tmp_path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 1)
    with WriteAheadLog.open(tmp_path) as wal:
        assert not wal.recovery.clean
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery.clean and wal.last_index == 29


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_corruption_yields_a_prefix_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("wal")
    written = write_log(directory, 120, segment_bytes=1500)
    files = segments(directory)
    victim = data.draw(st.sampled_from(files), label="segment")
    raw = bytearray(victim.read_bytes())
    damage = data.draw(st.sampled_from(["flip", "truncate", "overwrite"]), label="damage")
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    if damage == "flip":
        raw[at] ^= data.draw(st.integers(1, 255), label="mask")
    elif damage == "truncate":
        del raw[at:]
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
        raw[at : at + len(chunk)] = chunk
    victim.write_bytes(bytes(raw))
    with WriteAheadLog.open(directory, segment_bytes=1500) as wal:
        recovered = wal.entries()
        assert recovered == written[: len(recovered)]
        assert wal.last_index == len(recovered)
        # The damage starts in ``victim``: everything in the segments before it survives.
        assert len(recovered) >= int(victim.stem) - 1
        assert wal.recovery.records_kept == len(recovered)
    with WriteAheadLog.open(directory, segment_bytes=1500) as wal:
        assert wal.recovery.clean
        assert wal.entries() == recovered
