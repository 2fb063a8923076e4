"""SnapshotStore on real files: round trips, retention, corrupt snapshots, chunked reads."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from konsul.raft.types import Configuration, Member, SnapshotMeta
from konsul.storage.snapshots import (
    IncomingSnapshot,
    SnapshotNotFound,
    SnapshotStore,
    snapshot_name,
)

CONFIG = Configuration(
    (
        Member("a", "10.0.0.1:8300", True, "10.0.0.1:8500"),
        Member("b", "10.0.0.2:8300", False, ""),
    )
)


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index, term, CONFIG)


def body(index: int, size: int = 10_000) -> bytes:
    return (f"state at {index};".encode() * (size // 10 + 1))[:size]


def snap_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".snap")


def test_empty_store(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path / "snaps", retention=2) as store:
        assert store.load_latest() is None
        assert store.latest_meta() is None
        assert store.list() == []
        with pytest.raises(SnapshotNotFound):
            store.snapshot_size(meta(5))


def test_save_then_load_round_trip_in_a_new_store(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=2) as store:
        info = store.save(meta(100, 3), body(100))
        assert info.meta == meta(100, 3)
        assert info.size == len(body(100))
        assert Path(info.path) == tmp_path / snapshot_name(100, 3)
        assert store.load_latest() == (meta(100, 3), body(100))
    assert os.listdir(tmp_path) == [snapshot_name(100, 3)]  # no temp file left behind
    with SnapshotStore(tmp_path, retention=2) as store:
        loaded = store.load_latest()
        assert loaded is not None
        assert loaded[0] == meta(100, 3) and loaded[0].config.get("b") == CONFIG.members[1]
        assert loaded[1] == body(100)
        assert store.latest_meta() == meta(100, 3)
        assert store.snapshot_size(meta(100, 3)) == len(body(100))


def test_empty_body_and_multi_chunk_body(tmp_path: Path) -> None:
    big = os.urandom(9 << 20)  # larger than the verification chunk
    with SnapshotStore(tmp_path, retention=3) as store:
        store.save(meta(1), b"")
        store.save(meta(2), big)
    with SnapshotStore(tmp_path, retention=3) as store:
        assert store.latest_meta() == meta(2)
        assert store.load_latest() == (meta(2), big)
        assert store.snapshot_size(meta(1)) == 0
        assert store.read_snapshot_chunk(meta(1), 0, 100) == b""


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=2) as store:
        for index in (10, 20, 30, 40, 50):
            store.save(meta(index), body(index))
            assert len(snap_files(tmp_path)) == min(2, index // 10)
        assert snap_files(tmp_path) == [snapshot_name(40, 1), snapshot_name(50, 1)]
        assert [i.meta.index for i in store.list()] == [50, 40]
        assert [i.size for i in store.list()] == [len(body(50)), len(body(40))]


def test_saving_the_same_snapshot_twice_replaces_it(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=2) as store:
        store.save(meta(10), b"first")
        store.save(meta(10), b"second")
        assert store.load_latest() == (meta(10), b"second")
        assert len(store.list()) == 1


def _flip_body(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01
    path.write_bytes(bytes(raw))


def _bad_magic(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0:4] = b"NOPE"
    path.write_bytes(bytes(raw))


def _flip_meta(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[30] ^= 0x10  # inside the msgpack meta, after the 24-byte fixed header
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 1000)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "body-bit-flip": (_flip_body, "body checksum mismatch"),
    "bad-magic": (_bad_magic, "bad magic"),
    "meta-bit-flip": (_flip_meta, "header checksum mismatch"),
    "truncated": (_truncate, "truncated"),
    "empty-file": (_empty, "truncated header"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_corrupt_newest_falls_back_to_the_previous(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage_fn, reason = DAMAGE[damage]
    with SnapshotStore(tmp_path, retention=3) as store:
        store.save(meta(10, 1), body(10))
        store.save(meta(20, 2), body(20))
    newest = tmp_path / snapshot_name(20, 2)
    damage_fn(newest)
    with caplog.at_level(logging.WARNING, logger="konsul.storage"):
        store = SnapshotStore(tmp_path, retention=3)
        with store:
            assert store.load_latest() == (meta(10, 1), body(10))
            assert store.latest_meta() == meta(10, 1)
            assert [s.path for s in store.skipped] == [str(newest)]
            assert reason in store.skipped[0].reason
            with pytest.raises(SnapshotNotFound, match="corrupt"):
                store.read_snapshot_chunk(meta(20, 2), 0, 10)
            assert [i.meta.index for i in store.list()] == [10]
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert newest.exists()  # left for inspection


def test_latest_meta_alone_detects_a_corrupt_body(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=3) as store:
        store.save(meta(10), body(10))
        store.save(meta(20), body(20))
    _flip_body(tmp_path / snapshot_name(20, 1))
    with SnapshotStore(tmp_path, retention=3) as store:
        assert store.latest_meta() == meta(10)
        with pytest.raises(SnapshotNotFound):
            store.snapshot_size(meta(20))
        assert store.load_latest() == (meta(10), body(10))


def test_all_corrupt_means_none(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=3) as store:
        store.save(meta(10), body(10))
    _bad_magic(tmp_path / snapshot_name(10, 1))
    with SnapshotStore(tmp_path, retention=3) as store:
        assert store.load_latest() is None
        assert store.latest_meta() is None
        assert len(store.skipped) == 1


def test_a_renamed_snapshot_whose_header_disagrees_is_skipped(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=3) as store:
        store.save(meta(10), body(10))
        store.save(meta(20), body(20))
    os.replace(tmp_path / snapshot_name(10, 1), tmp_path / snapshot_name(30, 1))
    with SnapshotStore(tmp_path, retention=3) as store:
        assert store.load_latest() == (meta(20), body(20))
        assert "name disagrees" in store.skipped[0].reason


def test_retention_counts_only_valid_snapshots(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=2) as store:
        store.save(meta(10), body(10))
        store.save(meta(20), body(20))
    _flip_body(tmp_path / snapshot_name(20, 1))
    with SnapshotStore(tmp_path, retention=2) as store:
        assert store.load_latest() == (meta(10), body(10))
        store.save(meta(30), body(30))
        # Two valid ones kept (30, 10); the corrupt 20 stays while it is newer than them.
        assert snap_files(tmp_path) == [snapshot_name(i, 1) for i in (10, 20, 30)]
        store.save(meta(40), body(40))
        assert snap_files(tmp_path) == [snapshot_name(30, 1), snapshot_name(40, 1)]
        assert store.load_latest() == (meta(40), body(40))


def test_chunked_reads_rebuild_the_body(tmp_path: Path) -> None:
    data = os.urandom(1_000_003)
    with SnapshotStore(tmp_path, retention=2) as store:
        store.save(meta(7, 2), data)
    with SnapshotStore(tmp_path, retention=2) as store:
        m = meta(7, 2)
        size = store.snapshot_size(m)
        assert size == len(data)
        chunk = 65_536
        parts = [store.read_snapshot_chunk(m, off, chunk) for off in range(0, size, chunk)]
        assert all(len(p) == chunk for p in parts[:-1])
        assert len(parts[-1]) == size % chunk
        assert b"".join(parts) == data
        assert store.read_snapshot_chunk(m, size, chunk) == b""
        assert store.read_snapshot_chunk(m, size - 3, chunk) == data[-3:]
        assert store.read_chunk(m, 10, 5) == data[10:15]  # the architecture doc's name
        assert store.size(m) == size
        with pytest.raises(ValueError):
            store.read_snapshot_chunk(m, -1, 10)
        with pytest.raises(SnapshotNotFound):
            store.read_snapshot_chunk(meta(7, 3), 0, 10)


def test_chunks_of_a_snapshot_deleted_by_retention(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=1) as store:
        store.save(meta(10), body(10))
        assert store.read_snapshot_chunk(meta(10), 0, 5) == body(10)[:5]
        store.save(meta(20), body(20))
        with pytest.raises(SnapshotNotFound):
            store.read_snapshot_chunk(meta(10), 0, 5)
        assert store.read_snapshot_chunk(meta(20), 0, 5) == body(20)[:5]


def test_a_save_interrupted_by_a_crash_leaves_nothing_visible(tmp_path: Path) -> None:
    with SnapshotStore(tmp_path, retention=2) as store:
        store.save(meta(10), body(10))
    (tmp_path / (snapshot_name(20, 1) + ".tmp")).write_bytes(b"KSNP half written")
    with SnapshotStore(tmp_path, retention=2) as store:
        assert store.load_latest() == (meta(10), body(10))
        assert store.skipped == []
    assert snap_files(tmp_path) == [snapshot_name(10, 1)]
    assert not (tmp_path / (snapshot_name(20, 1) + ".tmp")).exists()


def test_retention_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SnapshotStore(tmp_path, retention=0)


def test_retention_never_keeps_an_undetected_corrupt_file_instead_of_a_good_one(
    tmp_path: Path,
) -> None:
    with SnapshotStore(tmp_path, retention=2) as store:
        store.save(meta(10), body(10))
        store.save(meta(20), body(20))
    _flip_body(tmp_path / snapshot_name(20, 1))
    with SnapshotStore(tmp_path, retention=2) as store:
        store.save(meta(30), body(30))  # no load_latest first: 20 was never read
        assert snap_files(tmp_path) == [snapshot_name(i, 1) for i in (10, 20, 30)]
        assert [s.path for s in store.skipped] == [str(tmp_path / snapshot_name(20, 1))]
    _flip_body(tmp_path / snapshot_name(30, 1))
    with SnapshotStore(tmp_path, retention=2) as store:
        assert store.load_latest() == (meta(10), body(10))


def test_a_body_saved_from_pieces_reads_back_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    pieces = (data[i:i + 100_000] for i in range(0, len(data), 100_000))
    with SnapshotStore(tmp_path, retention=2) as store:
        info = store.save_stream(meta(7, 2), pieces)
        assert info.size == len(data)
    with SnapshotStore(tmp_path, retention=2) as store:
        assert store.load_latest() == (meta(7, 2), data)
        assert store.read_chunk(meta(7, 2), len(data) - 5, 100) == data[-5:]


def test_a_stream_that_fails_leaves_no_snapshot(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("encoder broke")

    with SnapshotStore(tmp_path, retention=2) as store:
        with pytest.raises(RuntimeError):
            store.save_stream(meta(7), failing())
        assert store.load_latest() is None
    assert os.listdir(tmp_path) == []


def test_a_streamed_load_sees_the_bad_checksum_after_the_last_block_and_falls_back(
    tmp_path: Path,
) -> None:
    with SnapshotStore(tmp_path, retention=3) as store:
        store.save(meta(10), body(10))
        store.save(meta(20), body(20, size=20 * 1024 * 1024))
    _flip_body(tmp_path / snapshot_name(20, 1))
    consumed: list[int] = []

    def consume(m: SnapshotMeta, pieces: Iterator[bytes]) -> int:
        consumed.append(m.index)
        return sum(map(len, pieces))

    with SnapshotStore(tmp_path, retention=3) as store:
        assert store.load_latest_into(consume) == (meta(10), 10_000)
    assert consumed == [20, 10]  # the corrupt one was read to its end, then dropped


def test_a_snapshot_received_in_chunks_goes_to_a_file_and_commits(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    with SnapshotStore(tmp_path, retention=2) as store:
        incoming = IncomingSnapshot(store)
        incoming.begin(meta(5))
        incoming.write(b"a transfer that restarts")
        incoming.begin(meta(9))  # restarted from offset 0 (another snapshot): the first goes
        for i in range(0, len(data), 1 << 20):
            incoming.write(data[i:i + (1 << 20)])
        assert incoming.finish() is None  # (the body stays in the file)
        assert store.load_latest() is None  # nothing visible before the commit
        info = incoming.commit(meta(9))
        assert info.size == len(data)
        assert b"".join(store.read_body(meta(9))) == data
    assert snap_files(tmp_path) == [snapshot_name(9, 1)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(RuntimeError, match="no received snapshot"):
        IncomingSnapshot(SnapshotStore(tmp_path, retention=2)).commit(meta(9))
