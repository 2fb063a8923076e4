"""The write-ahead log, which is the Raft log, and the node's hard state (term, vote).

Layout of the directory:

* ``<first index, 20 digits>.wal``: segments, append-only. A segment holds the contiguous entries
  from the index in its name on; the next segment starts right after the last entry of this one.
  An empty segment is meaningful: it says where the log resumes (after ``reset`` or a truncation
  down to the segment's first index), so the next index survives a restart.
* ``hardstate``: term and vote, replaced atomically (temp file, fsync, rename, fsync directory).

A record is an 8-byte header (payload length, CRC-32 of the payload; little-endian u32 each)
followed by the payload, msgpack ``[index, term, kind, data]``. zlib's CRC-32 is used rather than
CRC-32C: it is in the standard library, runs at memory speed, and detects the damage that matters
here (torn writes, flipped bits) as well.

Durability contract: ``append`` only hands bytes to the OS; ``sync`` makes everything appended or
truncated since the last ``sync`` durable with one fdatasync of the active segment (plus one per
segment closed by a rollover and one directory fsync when files were created or deleted).
``save_hard_state`` and ``reset`` are durable when they return. ``compact`` is durable at the next
``sync`` (a compacted segment that comes back after a crash is harmless: it is still valid log).

Recovery never raises on damage: the log is cut at the last valid record, the file truncated on
disk, later segments deleted, and what was dropped reported in ``wal.recovery`` and logged.
"""

from __future__ import annotations

import gc
import logging
import os
import struct
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

import msgpack

from konsul.raft.types import Entry, EntryKind, HardState

log = logging.getLogger("konsul.storage")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENT_SUFFIX = ".wal"
HARD_STATE_FILE = "hardstate"
TEMP_SUFFIX = ".tmp"

_RECORD_HEADER = struct.Struct("<II")  # payload length, crc32(payload)
_HS_HEADER = struct.Struct("<4sI")  # magic, crc32(payload)
_HS_MAGIC = b"KHS1"
_KINDS: dict[int, EntryKind] = {int(kind): kind for kind in EntryKind}
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def _fdatasync(fd: int) -> None:
    # macOS has no fdatasync; fsync is the portable fallback (tests may run there).
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - platform dependent
        os.fsync(fd)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``WriteAheadLog.open`` found. ``reason is None`` means the log was intact."""

    records_kept: int
    bytes_dropped: int = 0
    segment: str | None = None  # file name of the segment where the log was cut
    offset: int | None = None  # byte offset in that segment where the cut was made
    reason: str | None = None  # why the record at that offset was rejected
    segments_deleted: tuple[str, ...] = ()  # later segments removed by the cut
    hard_state_error: str | None = None  # the hard state file was unreadable (see _load_hard_state)

    @property
    def clean(self) -> bool:
        return self.reason is None and self.hard_state_error is None


@dataclass(slots=True, eq=False)
class _Segment:
    first_index: int
    path: str
    offsets: array[int] = field(default_factory=lambda: array("q"))  # file offset per record
    size: int = 0  # bytes of valid records == where the next record goes
    fd: int = -1  # open for writing while active or waiting for its final fdatasync

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass(slots=True)
class _Scan:
    """Result of decoding one segment's bytes."""

    entries: list[Entry]
    offsets: array[int]
    valid_size: int
    reason: str | None  # None: every byte was a valid record


def _scan(buf: bytes, first_index: int) -> _Scan:
    """Decode the records of ``buf``; stop at the first one that is torn or garbled.

    This is the recovery hot loop (a million records should take seconds), hence the local
    bindings and the memoryview slices that avoid copying payloads before the CRC and unpack.
    """
    entries: list[Entry] = []
    offsets = array("q")
    append_entry = entries.append
    append_offset = offsets.append
    unpack_header = _RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    unpackb = msgpack.unpackb
    kinds = _KINDS
    mv = memoryview(buf)
    end = len(buf)
    pos = 0
    expected = first_index
    reason: str | None = None
    while pos < end:
        if end - pos < 8:
            reason = f"torn record header ({end - pos} of 8 bytes)"
            break
        length, crc = unpack_header(buf, pos)
        start = pos + 8
        stop = start + length
        if stop > end:
            reason = f"torn record: payload of {length} bytes, {end - start} present"
            break
        payload = mv[start:stop]
        if crc32(payload) != crc:
            reason = "checksum mismatch"
            break
        try:
            index, term, kind, data = unpackb(payload)
        except Exception:  # any decoding failure means a garbled record
            reason = "undecodable payload"
            break
        if (
            type(index) is not int
            or type(term) is not int
            or type(data) is not bytes
            or type(kind) is not int
            or kind not in kinds
            or term < 0
        ):
            reason = "malformed payload"
            break
        if index != expected:
            reason = f"index {index} where {expected} was expected"
            break
        append_entry(Entry(index, term, kinds[kind], data))
        append_offset(pos)
        expected += 1
        pos = stop
    return _Scan(entries, offsets, pos, reason)


def ensure_directory(path: str) -> None:
    """Create ``path`` if needed, durably: the new entry in its parent is fsynced too, so that a
    crash right after the first sync cannot lose the whole directory."""
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    parent = os.path.dirname(os.path.abspath(path))
    fd = os.open(parent, os.O_RDONLY | _O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _segment_index(name: str) -> int | None:
    stem = name[: -len(SEGMENT_SUFFIX)]
    if not name.endswith(SEGMENT_SUFFIX) or not stem.isdigit() or int(stem) < 1:
        return None
    return int(stem)


def _encode_hard_state(hs: HardState) -> bytes:
    payload: bytes = msgpack.packb([hs.term, hs.vote])
    return _HS_HEADER.pack(_HS_MAGIC, zlib.crc32(payload)) + payload


def _decode_hard_state(raw: bytes) -> HardState:
    """Raise ValueError when ``raw`` is not a hard state this module wrote."""
    if len(raw) < _HS_HEADER.size:
        raise ValueError(f"hard state file too short ({len(raw)} bytes)")
    magic, crc = _HS_HEADER.unpack_from(raw)
    payload = raw[_HS_HEADER.size :]
    if magic != _HS_MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if zlib.crc32(payload) != crc:
        raise ValueError("checksum mismatch")
    term, vote = msgpack.unpackb(payload)
    if type(term) is not int or term < 0 or not (vote is None or isinstance(vote, str)):
        raise ValueError("malformed hard state")
    return HardState(term, vote)


def _write_all(fd: int, buf: bytes | bytearray | memoryview) -> None:
    view = memoryview(buf)
    written = os.write(fd, view)
    while written < len(view):  # a regular file only writes short on ENOSPC-ish conditions
        written += os.write(fd, view[written:])


class WriteAheadLog:
    """The Raft log on disk. Not thread-safe: one caller at a time (``sync`` may run in a worker
    thread provided the event loop does not touch the log meanwhile)."""

    def __init__(
        self,
        directory: str,
        dir_fd: int,
        segment_bytes: int,
        segments: list[_Segment],
        hard_state: HardState,
        recovered: list[Entry],
        recovery: RecoveryReport,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.recovery = recovery
        self._dir_fd = dir_fd
        self._segments = segments
        self._firsts = [s.first_index for s in segments]  # for bisect in truncate_from
        self._hard_state = hard_state
        self._recovered: list[Entry] | None = recovered
        self._pending: list[_Segment] = []  # rolled-over segments awaiting their fdatasync
        self._active_dirty = False
        self._dir_dirty = False
        self._closed = False
        self._packer = msgpack.Packer()
        if segments:
            segments[-1].fd = os.open(segments[-1].path, _O_APPEND_FLAGS)

    # -- opening and recovery ---------------------------------------------------------------

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> WriteAheadLog:
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        path = os.fspath(directory)
        ensure_directory(path)
        dir_fd = os.open(path, os.O_RDONLY | _O_DIRECTORY)
        # Recovery creates up to millions of long-lived Entry objects and no garbage cycles:
        # the cyclic collector would keep rescanning them for nothing (about a fifth of the
        # time). Paused for the scan only, and restored as it was found.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return cls._recover(path, dir_fd, segment_bytes)
        except BaseException:
            os.close(dir_fd)
            raise
        finally:
            if gc_was_enabled:
                gc.enable()

    @classmethod
    def _recover(cls, path: str, dir_fd: int, segment_bytes: int) -> WriteAheadLog:
        names: list[tuple[int, str]] = []
        for name in os.listdir(path):
            if name.endswith(TEMP_SUFFIX):
                os.unlink(os.path.join(path, name))  # a save interrupted by a crash
                continue
            first = _segment_index(name)
            if first is not None:
                names.append((first, name))
            elif name != HARD_STATE_FILE:
                log.warning("wal %s: ignoring unexpected file %s", path, name)
        names.sort()

        segments: list[_Segment] = []
        entries: list[Entry] = []
        cut: tuple[int, int, str] | None = None  # (position in names, offset, reason)
        file_sizes: list[int] = []
        for position, (first, name) in enumerate(names):
            seg_path = os.path.join(path, name)
            buf = _read_file(seg_path)
            file_sizes.append(len(buf))
            if segments and first != segments[-1].last_index + 1:
                expected = segments[-1].last_index + 1
                cut = (position, 0, f"segment starts at {first} where {expected} was expected")
                break
            scan = _scan(buf, first)
            del buf  # a segment's bytes are not needed once decoded (64 MiB each by default)
            entries.extend(scan.entries)
            segments.append(_Segment(first, seg_path, scan.offsets, scan.valid_size))
            if scan.reason is not None:
                cut = (position, scan.valid_size, scan.reason)
                break

        report = RecoveryReport(records_kept=len(entries))
        if cut is not None:
            report = cls._cut(path, dir_fd, names, file_sizes, segments, cut, len(entries))

        hard_state, hs_error = cls._load_hard_state(path, entries)
        if hs_error is not None:
            report = replace(report, hard_state_error=hs_error)
        return cls(path, dir_fd, segment_bytes, segments, hard_state, entries, report)

    @staticmethod
    def _cut(
        path: str,
        dir_fd: int,
        names: list[tuple[int, str]],
        file_sizes: list[int],
        segments: list[_Segment],
        cut: tuple[int, int, str],
        kept: int,
    ) -> RecoveryReport:
        """Truncate the log on disk at ``cut`` and delete every later segment."""
        position, offset, reason = cut
        name = names[position][1]
        scanned_whole = position < len(segments)  # False: the segment was rejected by its name
        dropped = file_sizes[position] - offset if scanned_whole else 0
        deleted: list[str] = []
        if scanned_whole:
            fd = os.open(os.path.join(path, name), os.O_WRONLY)
            try:
                os.ftruncate(fd, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            dropped += file_sizes[position]
            deleted.append(name)
            os.unlink(os.path.join(path, name))
        for _first, later in names[position + 1 :]:
            later_path = os.path.join(path, later)
            dropped += os.path.getsize(later_path)
            deleted.append(later)
            os.unlink(later_path)
        os.fsync(dir_fd)
        report = RecoveryReport(kept, dropped, name, offset, reason, tuple(deleted))
        log.warning(
            "wal %s: damaged log cut in %s at byte %d (%s): kept %d records, dropped %d bytes%s",
            path,
            name,
            offset,
            reason,
            kept,
            dropped,
            f", deleted {', '.join(deleted)}" if deleted else "",
        )
        return report

    @staticmethod
    def _load_hard_state(path: str, entries: list[Entry]) -> tuple[HardState, str | None]:
        hs_path = os.path.join(path, HARD_STATE_FILE)
        try:
            raw = _read_file(hs_path)
        except FileNotFoundError:
            return HardState(), None
        try:
            return _decode_hard_state(raw), None
        except Exception as exc:
            # The file is replaced atomically, so this is media damage. Falling back to zero
            # would let the node vote twice in a term it already voted in; the highest term in
            # the log is the best lower bound we have, with no vote. Reported loudly.
            term = entries[-1].term if entries else 0
            error = f"unreadable hard state ({exc}); assuming term {term}, no vote"
            log.error("wal %s: %s", path, error)
            return HardState(term, None), error

    # -- reading ------------------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def first_index(self) -> int:
        """Index of the first entry held; ``last_index + 1`` when the log is empty."""
        return self._segments[0].first_index if self._segments else 1

    @property
    def last_index(self) -> int:
        """Index of the last entry; 0 for a new log, ``index`` right after ``reset(index, _)``."""
        return self._segments[-1].last_index if self._segments else 0

    def entries(self) -> list[Entry]:
        """Every entry in the log, in order.

        Right after ``open`` this is the list recovery decoded (handed over once, not copied);
        after that the segments are read back from disk (the page cache, in practice).
        """
        self._check_open()
        if self._recovered is not None:
            recovered, self._recovered = self._recovered, None
            return recovered
        result: list[Entry] = []
        for seg in self._segments:
            buf = _read_file(seg.path)[: seg.size]
            scan = _scan(buf, seg.first_index)
            if scan.reason is not None:  # the file changed under us: not something to hide
                raise OSError(f"{seg.path}: {scan.reason} at byte {scan.valid_size}")
            result.extend(scan.entries)
        return result

    # -- writing ------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Hand ``entries`` to the OS (no fsync). They must continue the log contiguously."""
        self._check_open()
        if not entries:
            return
        expected = self.last_index + 1
        for offset, entry in enumerate(entries):
            if entry.index != expected + offset:
                raise ValueError(
                    f"append not contiguous: entry {entry.index} where {expected + offset} "
                    "was expected"
                )
        self._recovered = None  # entries() must now reflect the change
        seg = self._segments[-1] if self._segments else self._new_segment(expected)
        limit = self.segment_bytes
        pack = self._packer.pack
        crc32 = zlib.crc32
        header = _RECORD_HEADER.pack
        buf = bytearray()
        offsets = array("q")
        for entry in entries:
            payload = pack((entry.index, entry.term, int(entry.kind), entry.data))
            used = seg.size + len(buf)
            if used and used + 8 + len(payload) > limit:
                self._write(seg, buf, offsets)
                seg = self._roll(entry.index)
                buf = bytearray()
                offsets = array("q")
                used = 0
            offsets.append(used)
            buf += header(len(payload), crc32(payload))
            buf += payload
        self._write(seg, buf, offsets)

    def _write(self, seg: _Segment, buf: bytearray, offsets: array[int]) -> None:
        try:
            _write_all(seg.fd, buf)
        except OSError:
            # Leave no partial record behind for the next append to follow.
            try:
                os.ftruncate(seg.fd, seg.size)
            except OSError:
                log.exception("wal %s: could not undo a failed write", seg.path)
            raise
        seg.offsets.extend(offsets)
        seg.size += len(buf)
        self._active_dirty = True

    def _new_segment(self, first_index: int) -> _Segment:
        path = os.path.join(self.directory, segment_name(first_index))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        seg = _Segment(first_index, path, fd=fd)
        self._segments.append(seg)
        self._firsts.append(first_index)
        self._dir_dirty = True
        return seg

    def _roll(self, first_index: int) -> _Segment:
        """Close out the active segment (its fdatasync waits for the next ``sync``)."""
        old = self._segments[-1]
        if self._active_dirty:
            self._pending.append(old)
        else:
            os.close(old.fd)
            old.fd = -1
        self._active_dirty = False
        return self._new_segment(first_index)

    def truncate_from(self, index: int) -> None:
        """Drop every entry >= ``index`` (Raft conflict resolution); durable at the next sync."""
        self._check_open()
        if index > self.last_index:
            return
        if index < self.first_index:
            raise ValueError(f"cannot truncate from {index}: log starts at {self.first_index}")
        self._recovered = None
        k = bisect_right(self._firsts, index) - 1
        for later in self._segments[k + 1 :]:
            self._discard(later)
        del self._segments[k + 1 :]
        del self._firsts[k + 1 :]
        seg = self._segments[k]
        if seg in self._pending:  # it becomes the active segment again
            self._pending.remove(seg)
        if seg.fd < 0:
            seg.fd = os.open(seg.path, _O_APPEND_FLAGS)
        position = index - seg.first_index
        seg.size = seg.offsets[position]
        del seg.offsets[position:]
        os.ftruncate(seg.fd, seg.size)
        self._active_dirty = True

    def _discard(self, seg: _Segment) -> None:
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        if seg in self._pending:
            self._pending.remove(seg)
        os.unlink(seg.path)
        self._dir_dirty = True

    def compact(self, up_to_index: int) -> None:
        """Delete whole segments whose entries are all <= ``up_to_index``.

        The active segment always stays, so the log never forgets where it resumes.
        """
        self._check_open()
        drop = 0
        while drop + 1 < len(self._segments) and self._firsts[drop + 1] - 1 <= up_to_index:
            drop += 1
        if not drop:
            return
        self._recovered = None
        for seg in self._segments[:drop]:
            self._discard(seg)
        del self._segments[:drop]
        del self._firsts[:drop]

    def reset(self, index: int, term: int) -> None:
        """Drop everything; the next entry appended is ``index + 1``. Durable on return.

        ``term`` (the snapshot's last term) is not stored: the snapshot holds it. It is taken so
        that the call reads like what it is, and checked for sanity.
        """
        self._check_open()
        if index < 0 or term < 0:
            raise ValueError(f"invalid reset point {index}/{term}")
        self._recovered = None
        for seg in self._segments:
            self._discard(seg)
        self._segments.clear()
        self._firsts.clear()
        self._pending.clear()
        self._new_segment(index + 1)
        self._active_dirty = False
        os.fsync(self._dir_fd)
        self._dir_dirty = False

    def sync(self) -> None:
        """Make every append and truncation so far durable."""
        self._check_open()
        for seg in self._pending:
            _fdatasync(seg.fd)
            os.close(seg.fd)
            seg.fd = -1
        self._pending.clear()
        if self._active_dirty:
            _fdatasync(self._segments[-1].fd)
            self._active_dirty = False
        if self._dir_dirty:
            os.fsync(self._dir_fd)
            self._dir_dirty = False

    def save_hard_state(self, hs: HardState) -> None:
        """Store term and vote atomically; durable on return."""
        self._check_open()
        if hs == self._hard_state:
            return
        final = os.path.join(self.directory, HARD_STATE_FILE)
        temp = final + TEMP_SUFFIX
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, _encode_hard_state(hs))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        os.fsync(self._dir_fd)
        self._hard_state = hs

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the files. Anything not yet synced is left to the OS, not lost on purpose."""
        if self._closed:
            return
        self._closed = True
        for seg in self._segments:
            if seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
        self._pending.clear()
        os.close(self._dir_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write-ahead log is closed")

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"WriteAheadLog({self.directory!r}, first={self.first_index}, "
            f"last={self.last_index}, segments={len(self._segments)})"
        )


__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "RecoveryReport",
    "WriteAheadLog",
    "ensure_directory",
    "segment_name",
]
