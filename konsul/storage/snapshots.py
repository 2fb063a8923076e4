"""Snapshot files: atomic, checksummed, with retention.

One file per snapshot, named ``<index, 20 digits>-<term, 20 digits>.snap`` so that sorting the
names sorts the snapshots oldest to newest. A file is:

* a fixed header (little-endian): magic ``KSNP``, format version (u16), flags (u16, zero),
  body length (u64), CRC-32 of the body (u32), meta length (u32);
* the meta, msgpack ``[index, term, configuration.to_wire()]``;
* a CRC-32 (u32) of the fixed header and the meta, so a damaged header is told from a damaged body;
* the body, the state machine's bytes, untouched, so InstallSnapshot chunks are plain preads.

Bodies are written and read as streams: ``save_stream`` takes the body in pieces and fills in
the header (length, checksum) last; ``load_latest_into`` hands the body over a block at a time
and checks the checksum past the last block, so that neither ever holds a whole body in memory.

``save`` writes a temp file, fsyncs it, renames it into place and fsyncs the directory; only then
are snapshots beyond the retention deleted. A corrupt snapshot (bad magic or version, checksum
mismatch, truncated) is skipped with a warning and listed in ``store.skipped``; the file is left in
place for inspection until retention ages it out.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, TypeVar

import msgpack

from konsul.raft.types import Configuration, SnapshotMeta
from konsul.storage.wal import ensure_directory

log = logging.getLogger("konsul.storage")

MAGIC = b"KSNP"
FORMAT_VERSION = 1
SUFFIX = ".snap"
TEMP_SUFFIX = ".tmp"
INCOMING_SUFFIX = ".incoming.tmp"  # one being received from the leader

_FIXED = struct.Struct("<4sHHQII")  # magic, version, flags, body length, body crc, meta length
_HEADER_CRC = struct.Struct("<I")
_MAX_META = 64 * 1024 * 1024  # a configuration is small; a larger length is a garbled header
_NAME = re.compile(r"^(\d{20})-(\d{20})" + re.escape(SUFFIX) + "$")
_VERIFY_CHUNK = 8 * 1024 * 1024
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

T = TypeVar("T")


class CorruptSnapshot(Exception):
    """A snapshot file failed validation."""


class SnapshotNotFound(LookupError):
    """No valid snapshot file for the requested meta."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    meta: SnapshotMeta
    path: str
    size: int  # bytes of the body: what snapshot_size returns and InstallSnapshot sends


@dataclass(frozen=True, slots=True)
class SkippedSnapshot:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Header:
    meta: SnapshotMeta
    body_offset: int
    body_size: int
    body_crc: int


def snapshot_name(index: int, term: int) -> str:
    return f"{index:020d}-{term:020d}{SUFFIX}"


def _encode_header(meta: SnapshotMeta, body_size: int, body_crc: int) -> bytes:
    meta_bytes: bytes = msgpack.packb([meta.index, meta.term, meta.config.to_wire()])
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, 0, body_size, body_crc, len(meta_bytes))
    head = fixed + meta_bytes
    return head + _HEADER_CRC.pack(zlib.crc32(head))


def _decode_meta(raw: bytes) -> SnapshotMeta:
    try:
        index, term, wire = msgpack.unpackb(raw)
        config = Configuration.from_wire(wire)
    except Exception as exc:
        raise CorruptSnapshot(f"undecodable meta ({exc})") from None
    if type(index) is not int or type(term) is not int or index < 0 or term < 0:
        raise CorruptSnapshot("malformed meta")
    return SnapshotMeta(index, term, config)


def _read_header(fd: int, file_size: int) -> _Header:
    fixed = os.pread(fd, _FIXED.size, 0)
    if len(fixed) < _FIXED.size:
        raise CorruptSnapshot(f"truncated header ({file_size} bytes)")
    magic, version, _flags, body_size, body_crc, meta_size = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise CorruptSnapshot(f"bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise CorruptSnapshot(f"unsupported format version {version}")
    if meta_size > _MAX_META:
        raise CorruptSnapshot(f"implausible meta length {meta_size}")
    rest = os.pread(fd, meta_size + _HEADER_CRC.size, _FIXED.size)
    if len(rest) < meta_size + _HEADER_CRC.size:
        raise CorruptSnapshot(f"truncated header ({file_size} bytes)")
    meta_bytes = rest[:meta_size]
    (header_crc,) = _HEADER_CRC.unpack_from(rest, meta_size)
    if zlib.crc32(fixed + meta_bytes) != header_crc:
        raise CorruptSnapshot("header checksum mismatch")
    body_offset = _FIXED.size + meta_size + _HEADER_CRC.size
    if file_size != body_offset + body_size:
        raise CorruptSnapshot(
            f"file is {file_size} bytes, header says {body_offset + body_size} (truncated?)"
        )
    return _Header(_decode_meta(meta_bytes), body_offset, body_size, body_crc)


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    # Short reads happen past 2 GiB per call on Linux; stitch them (rare, so copying is fine).
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise CorruptSnapshot(f"truncated body ({got} of {size} bytes)")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    written = os.write(fd, view)
    while written < len(view):
        written += os.write(fd, view[written:])


class SnapshotWriter:
    """One snapshot being written: the body appended piece by piece after room for the header,
    the header (body length and checksum) written last, then fsync, rename, directory fsync
    and retention (``commit``), or the file removed (``abort``)."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta, suffix: str) -> None:
        self._store = store
        self.meta = meta
        self._name = snapshot_name(meta.index, meta.term)
        self._final = os.path.join(store.directory, self._name)
        self._temp = self._final + suffix
        self._head_size = len(_encode_header(meta, 0, 0))
        self._crc = 0
        self.size = 0
        self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.lseek(self._fd, self._head_size, os.SEEK_SET)

    def write(self, piece: bytes) -> None:
        self._crc = zlib.crc32(piece, self._crc)
        self.size += len(piece)
        _write_all(self._fd, piece)

    def commit(self) -> SnapshotInfo:
        try:
            head = _encode_header(self.meta, self.size, self._crc)
            assert len(head) == self._head_size  # (the meta alone decides it)
            os.pwrite(self._fd, head, 0)
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = -1
        os.replace(self._temp, self._final)
        self._store._committed(self._name, _Header(self.meta, self._head_size, self.size,
                                                   self._crc))
        return SnapshotInfo(self.meta, self._final, self.size)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


class IncomingSnapshot:
    """The ``SnapshotSink`` of a follower's core (``konsul.raft.core``): the chunks of a
    snapshot a leader sends go straight to a file beside the snapshots; the runtime commits
    it (``commit``) when the core hands the snapshot over, and restores from the file."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store
        self._writer: SnapshotWriter | None = None

    def begin(self, meta: SnapshotMeta) -> None:
        if self._writer is not None:
            self._writer.abort()
        self._writer = self._store.writer(meta, INCOMING_SUFFIX)

    def write(self, data: bytes) -> None:
        assert self._writer is not None  # (the core begins every transfer at offset 0)
        self._writer.write(data)

    def finish(self) -> None:
        """Nothing to hand out: the body is in the file (``Ready.snapshot.data`` is None)."""

    def commit(self, meta: SnapshotMeta) -> SnapshotInfo:
        writer, self._writer = self._writer, None
        if writer is None or writer.meta != meta:
            raise RuntimeError(f"no received snapshot {meta.index}@{meta.term} to commit")
        return writer.commit()


class SnapshotStore:
    """Snapshots of the state machine in ``directory``, the newest ``retention`` kept.

    Safe to use from a worker thread (``save``) while the event loop reads chunks: the shared
    bookkeeping is under a lock and every read opens its own file descriptor.
    """

    def __init__(self, directory: str | os.PathLike[str], retention: int) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        self.directory = os.fspath(directory)
        self.retention = retention
        self.skipped: list[SkippedSnapshot] = []
        ensure_directory(self.directory)
        self._dir_fd = os.open(self.directory, os.O_RDONLY | _O_DIRECTORY)
        self._lock = threading.Lock()
        self._headers: dict[str, _Header] = {}  # name -> header, for files whose header is valid
        self._verified: set[str] = set()  # names whose body checksum was checked (or written)
        self._bad: dict[str, str] = {}  # name -> why it was skipped
        for name in os.listdir(self.directory):
            if name.endswith(TEMP_SUFFIX):  # a save interrupted by a crash
                os.unlink(os.path.join(self.directory, name))

    # -- writing ------------------------------------------------------------------------------

    def save(self, meta: SnapshotMeta, data: bytes) -> SnapshotInfo:
        """Write a snapshot durably, then apply retention. ``data`` is written without copying."""
        return self.save_stream(meta, (data,))

    def save_stream(self, meta: SnapshotMeta, pieces: Iterable[bytes]) -> SnapshotInfo:
        """``save`` from the body's pieces, written as they come (the state machine encodes
        them as it is iterated): the whole body is never in memory. The header, which holds
        the body's length and checksum, goes in last, at its place in front."""
        writer = self.writer(meta, TEMP_SUFFIX)
        try:
            for piece in pieces:
                writer.write(piece)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def writer(self, meta: SnapshotMeta, suffix: str) -> SnapshotWriter:
        """A snapshot written a piece at a time into ``<name><suffix>`` (a ``.tmp`` name,
        removed at startup if a crash left it), committed or aborted at the end."""
        return SnapshotWriter(self, meta, suffix)

    def _committed(self, name: str, header: _Header) -> None:
        os.fsync(self._dir_fd)
        with self._lock:
            self._headers[name] = header
            self._verified.add(name)
            self._bad.pop(name, None)
        self._apply_retention()

    def _apply_retention(self) -> None:
        """Keep the newest ``retention`` valid snapshots; delete the files older than those.

        Each one kept is checksummed first (once per file per process: the result is cached),
        so a silently corrupt snapshot is never what stands in for a good older one. Corrupt
        files newer than the oldest kept stay for inspection.
        """
        kept = 0
        for name in self._names_newest_first():
            if kept < self.retention:
                try:
                    self._checked(name)
                except SnapshotNotFound:
                    continue
                kept += 1
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))
            with self._lock:
                self._headers.pop(name, None)
                self._verified.discard(name)
                self._bad.pop(name, None)
            log.info(
                "snapshots %s: deleted %s (retention %d)", self.directory, name, self.retention
            )

    # -- reading ------------------------------------------------------------------------------

    def load_latest(self) -> tuple[SnapshotMeta, bytes] | None:
        """The newest valid snapshot (meta, body), skipping corrupt ones; None if there is none."""
        return self.load_latest_into(lambda meta, pieces: b"".join(pieces))

    def load_latest_into(
        self, consume: Callable[[SnapshotMeta, Iterator[bytes]], T]
    ) -> tuple[SnapshotMeta, T] | None:
        """Stream the newest valid snapshot's body to ``consume(meta, pieces)`` and return its
        meta and what ``consume`` returned; None if there is none.

        The pieces are read a block at a time; past the last one the body's checksum is
        compared, and a mismatch raises ``CorruptSnapshot`` out of the iteration, so a consumer
        that builds something from them drops it. The snapshot is then marked corrupt and the
        next older one is tried."""
        for name in self._names_newest_first():
            with self._lock:
                if name in self._bad:
                    continue
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    # Read the header afresh: this is the startup path, where trust is earned.
                    header = self._header_of(name, f.fileno(), fresh=True)
                    result = consume(header.meta, self._body(name, f, header))
            except CorruptSnapshot as exc:
                self._mark_bad(name, str(exc))
                continue
            except FileNotFoundError:
                continue  # deleted by retention meanwhile
            return header.meta, result
        return None

    def _body(self, name: str, f: BinaryIO, header: _Header) -> Iterator[bytes]:
        """The body of ``name`` (open as ``f``) in blocks; its checksum checked past the last."""
        f.seek(header.body_offset)
        crc = 0
        remaining = header.body_size
        while remaining:
            piece = f.read(min(remaining, _VERIFY_CHUNK))
            if not piece:
                raise CorruptSnapshot(
                    f"truncated body ({header.body_size - remaining} of {header.body_size} "
                    "bytes)"
                )
            crc = zlib.crc32(piece, crc)
            remaining -= len(piece)
            if not remaining and crc != header.body_crc:
                raise CorruptSnapshot("body checksum mismatch")
            yield piece
        if header.body_size == 0 and header.body_crc != 0:
            raise CorruptSnapshot("body checksum mismatch")
        with self._lock:
            self._verified.add(name)

    def latest_meta(self) -> SnapshotMeta | None:
        """Meta of the snapshot ``load_latest`` would return (bodies checksummed, once each)."""
        for name in self._names_newest_first():
            try:
                return self._checked(name).meta
            except SnapshotNotFound:
                continue
        return None

    def list(self) -> builtins.list[SnapshotInfo]:  # (shadows list in the class body)
        """Snapshots with a valid header, newest first (bodies are not checksummed here)."""
        infos: list[SnapshotInfo] = []
        for name in self._names_newest_first():
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as f:
                    header = self._header_of(name, f.fileno())
            except CorruptSnapshot as exc:
                self._mark_bad(name, str(exc))
                continue
            except FileNotFoundError:
                continue
            with self._lock:
                if name in self._bad:
                    continue
            infos.append(SnapshotInfo(header.meta, path, header.body_size))
        return infos

    def snapshot_size(self, meta: SnapshotMeta) -> int:
        """Bytes of the body of the snapshot ``meta`` names (what InstallSnapshot transfers)."""
        return self._checked(snapshot_name(meta.index, meta.term)).body_size

    def read_snapshot_chunk(self, meta: SnapshotMeta, offset: int, size: int) -> bytes:
        """``size`` bytes of the body from ``offset`` (fewer at the end; empty past it)."""
        if offset < 0 or size < 0:
            raise ValueError(f"invalid chunk {offset}+{size}")
        name = snapshot_name(meta.index, meta.term)
        header = self._checked(name)
        if offset >= header.body_size:
            return b""
        size = min(size, header.body_size - offset)
        try:
            fd = os.open(os.path.join(self.directory, name), os.O_RDONLY)
        except FileNotFoundError:
            raise SnapshotNotFound(name) from None
        try:
            return _pread_exact(fd, size, header.body_offset + offset)
        finally:
            os.close(fd)

    # The names docs/architecture.md uses for the same two calls.
    size = snapshot_size
    read_chunk = read_snapshot_chunk

    def read_body(self, meta: SnapshotMeta) -> Iterator[bytes]:
        """The body of the snapshot ``meta`` names, a block at a time, its checksum compared
        past the last block (``CorruptSnapshot`` out of the iteration on a mismatch)."""
        name = snapshot_name(meta.index, meta.term)
        with open(os.path.join(self.directory, name), "rb") as f:
            yield from self._body(name, f, self._header_of(name, f.fileno(), fresh=True))

    # -- helpers ------------------------------------------------------------------------------

    def _names_newest_first(self) -> builtins.list[str]:
        names = [n for n in os.listdir(self.directory) if _NAME.match(n)]
        # Fixed-width digits: lexical order is (index, term) order.
        names.sort(reverse=True)
        return names

    def _header_of(self, name: str, fd: int, *, fresh: bool = False) -> _Header:
        """The header of ``name`` (open as ``fd``), from the cache unless ``fresh``."""
        if not fresh:
            with self._lock:
                cached = self._headers.get(name)
            if cached is not None:
                return cached
        header = _read_header(fd, os.fstat(fd).st_size)
        match = _NAME.match(name)
        assert match is not None  # only names matching _NAME get here
        if (header.meta.index, header.meta.term) != (int(match[1]), int(match[2])):
            raise CorruptSnapshot(
                f"header says {header.meta.index}/{header.meta.term}, name disagrees"
            )
        with self._lock:
            self._headers[name] = header
        return header

    def _checked(self, name: str) -> _Header:
        """The header of ``name`` once its body checksum is known good."""
        with self._lock:
            if name in self._bad:
                raise SnapshotNotFound(f"{name} is corrupt: {self._bad[name]}")
            if name in self._verified:
                return self._headers[name]
        path = os.path.join(self.directory, name)
        try:
            with open(path, "rb") as f:
                header = self._header_of(name, f.fileno())
                crc = 0
                remaining = header.body_size
                f.seek(header.body_offset)
                while remaining:
                    chunk = f.read(min(remaining, _VERIFY_CHUNK))
                    if not chunk:
                        raise CorruptSnapshot("truncated body")
                    crc = zlib.crc32(chunk, crc)
                    remaining -= len(chunk)
        except FileNotFoundError:
            raise SnapshotNotFound(name) from None
        except CorruptSnapshot as exc:
            self._mark_bad(name, str(exc))
            raise SnapshotNotFound(f"{name} is corrupt: {exc}") from None
        if crc != header.body_crc:
            self._mark_bad(name, "body checksum mismatch")
            raise SnapshotNotFound(f"{name} is corrupt: body checksum mismatch")
        with self._lock:
            self._verified.add(name)
        return header

    def _mark_bad(self, name: str, reason: str) -> None:
        path = os.path.join(self.directory, name)
        with self._lock:
            if name in self._bad:
                return
            self._bad[name] = reason
            self._headers.pop(name, None)
            self._verified.discard(name)
            self.skipped.append(SkippedSnapshot(path, reason))
        log.warning("snapshots %s: skipping corrupt snapshot %s: %s", self.directory, name, reason)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "CorruptSnapshot",
    "IncomingSnapshot",
    "SkippedSnapshot",
    "SnapshotInfo",
    "SnapshotNotFound",
    "SnapshotStore",
    "SnapshotWriter",
    "snapshot_name",
]
