"""The backup file: one snapshot of a cluster's state, self-describing and self-checking.

``GET /cluster/snapshot`` streams exactly these bytes; ``konsulctl snapshot save`` writes them
to a file, ``inspect`` reads them, ``restore`` sends them back. Layout::

    magic    b"KONSULBK"
    version  u16 (big-endian) = 1
    length   u32 of the header
    header   msgpack map: cluster_id, node_id (the member that wrote it), index and term (the
             last log entry the state includes), created (RFC 3339, UTC), store_format, and the
             kv_count, service_count and check_count of the state
    frames   u32 length (> 0) + that many bytes of the store's snapshot (konsul/store/snapshot.py)
    end      u32 0
    sha256   32 bytes: SHA-256 of every byte before it
    end tag  b"KONSUL.."

The checksum is a trailer, not a header, because the file is written while the state is still
being encoded: a server streams it without ever holding it whole or knowing its size. A reader
tells a truncated file (it ends before the end tag) from a damaged one (the checksum differs)
and from a file of another kind (the magic differs: a data directory's Raft snapshot or an
``/export`` document are named as such).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from konsul.store.snapshot import Loader, SnapshotError, Tables

MAGIC = b"KONSULBK"
END_TAG = b"KONSUL.."
VERSION = 1
SUFFIX = ".snap"

_VERSION = struct.Struct(">H")
_LENGTH = struct.Struct(">I")
_PREAMBLE = len(MAGIC) + _VERSION.size + _LENGTH.size
_TRAILER = hashlib.sha256().digest_size + len(END_TAG)
_MAX_HEADER = 1 << 20
_MAX_FRAME = 1 << 30


class BadBackup(ValueError):
    """Bytes that are not a whole, intact backup file; the message says which of these."""


@dataclass(frozen=True, slots=True)
class Header:
    cluster_id: str
    node_id: str
    index: int
    term: int
    created: str
    store_format: int
    kv_count: int
    service_count: int
    check_count: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id, "node_id": self.node_id, "index": self.index,
            "term": self.term, "created": self.created, "store_format": self.store_format,
            "kv_count": self.kv_count, "service_count": self.service_count,
            "check_count": self.check_count,
        }

    @classmethod
    def from_wire(cls, raw: object) -> Header:
        if not isinstance(raw, dict):
            raise BadBackup("the backup's header is not a map")
        try:
            header = cls(**{name: raw[name] for name in cls.__slots__})
        except KeyError as exc:
            raise BadBackup(f"the backup's header lacks {exc}") from None
        for name in ("index", "term", "store_format", "kv_count", "service_count",
                     "check_count"):
            if type(getattr(header, name)) is not int or getattr(header, name) < 0:
                raise BadBackup(f"the backup's header has a bad {name}")
        for name in ("cluster_id", "node_id", "created"):
            if type(getattr(header, name)) is not str:
                raise BadBackup(f"the backup's header has a bad {name}")
        return header


def write(header: Header, body: Iterable[bytes]) -> Iterator[bytes]:
    """The file's bytes for ``header`` and the store snapshot ``body``, a piece at a time."""
    digest = hashlib.sha256()

    def out(data: bytes) -> bytes:
        digest.update(data)
        return data

    meta: bytes = msgpack.packb(header.to_wire())
    yield out(MAGIC + _VERSION.pack(VERSION) + _LENGTH.pack(len(meta)) + meta)
    for piece in body:
        if piece:
            yield out(_LENGTH.pack(len(piece)) + piece)
    yield out(_LENGTH.pack(0))
    yield digest.digest() + END_TAG


class Reader:
    """Reads a backup file given in pieces cut anywhere: ``feed`` returns the store snapshot's
    bytes that became available, ``finish`` checks that the file was whole and intact.

    ``header`` is set once its bytes have arrived. Nothing it returns is trusted before
    ``finish`` succeeds: a caller builds from the pieces and throws the result away if it
    raises (every consumer here does: a restore changes nothing until then).
    """

    def __init__(self) -> None:
        self.header: Header | None = None
        self.size = 0  # bytes of the file seen
        self.body_size = 0
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._frame_left = 0  # bytes of the current frame still to come
        self._ended = False  # the end marker was read: only the trailer may follow
        self._in_header = True
        # A header that does not decode is reported at the end, after the checksum: damage
        # is named as damage, whatever it did to the header.
        self._header_problem: BadBackup | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self.size += len(data)
        self._buffer += data
        out: list[bytes] = []
        while True:
            if self._in_header:
                if not self._read_header():
                    return out
            elif self._ended:
                if len(self._buffer) > _TRAILER:
                    raise BadBackup("data after the end of the backup")
                return out
            elif self._frame_left:
                take = min(self._frame_left, len(self._buffer))
                if not take:
                    return out
                piece = bytes(self._buffer[:take])
                del self._buffer[:take]
                self._digest.update(piece)
                self._frame_left -= take
                self.body_size += take
                out.append(piece)
            else:
                if len(self._buffer) < _LENGTH.size:
                    return out
                raw = bytes(self._buffer[:_LENGTH.size])
                del self._buffer[:_LENGTH.size]
                self._digest.update(raw)
                (length,) = _LENGTH.unpack(raw)
                if length > _MAX_FRAME:
                    raise BadBackup("the backup is damaged (a frame of implausible length)")
                self._frame_left = length
                self._ended = length == 0

    def _read_header(self) -> bool:
        buffer = self._buffer
        start = bytes(buffer[:len(MAGIC)])
        if not MAGIC.startswith(start):
            raise BadBackup(_not_a_backup(start))
        if len(buffer) < _PREAMBLE:
            return False
        (version,) = _VERSION.unpack_from(buffer, len(MAGIC))
        if version != VERSION:
            raise BadBackup(f"backup file version {version} is not supported (only {VERSION})")
        (length,) = _LENGTH.unpack_from(buffer, len(MAGIC) + _VERSION.size)
        if length > _MAX_HEADER:
            raise BadBackup("the backup is damaged (a header of implausible length)")
        if len(buffer) < _PREAMBLE + length:
            return False
        raw = bytes(buffer[:_PREAMBLE + length])
        try:
            self.header = Header.from_wire(msgpack.unpackb(raw[_PREAMBLE:]))
        except BadBackup as exc:
            self._header_problem = exc
        except Exception:
            self._header_problem = BadBackup("the backup is damaged (its header does not decode)")
        self._digest.update(raw)
        del buffer[:_PREAMBLE + length]
        self._in_header = False
        return True

    def finish(self) -> Header:
        """The header, once the whole file arrived and its checksum matches."""
        if self._in_header or not self._ended or len(self._buffer) < _TRAILER:
            raise BadBackup(
                f"the backup is truncated (it ends after {self.size} bytes, before its end)"
            )
        digest, tag = bytes(self._buffer[:32]), bytes(self._buffer[32:_TRAILER])
        if tag != END_TAG:
            raise BadBackup("the backup is damaged (its end tag is wrong)")
        if digest != self._digest.digest():
            raise BadBackup("the backup is damaged: its SHA-256 checksum does not match")
        if self._header_problem is not None:
            raise self._header_problem
        assert self.header is not None
        return self.header


def _not_a_backup(start: bytes) -> str:
    if start.startswith(b"KSNP"):
        return ("this is a Raft snapshot from a data directory, not a backup: take one with "
                "`konsulctl snapshot save`")
    if start.lstrip()[:1] in (b"{", b"["):
        return "this looks like an /export document (JSON), not a backup: use `konsulctl import`"
    return "not a Konsul backup file (it does not start with KONSULBK)"


@dataclass(frozen=True, slots=True)
class Inspection:
    """A backup read to its end: whole, intact, and a store snapshot of the right shape."""

    header: Header
    size: int  # bytes of the file
    body_size: int  # bytes of the store snapshot in it
    kv_count: int
    service_count: int
    check_count: int


def inspect(chunks: Iterable[bytes]) -> Inspection:
    """Check a whole backup (frames, checksum, and every row of the snapshot inside, nothing
    kept); ``BadBackup`` with the reason otherwise."""
    reader = Reader()
    loader = Checker()
    for chunk in chunks:
        for piece in reader.feed(chunk):
            loader.feed(piece)
    header = reader.finish()
    loader.finish()
    return Inspection(header, reader.size, reader.body_size, loader.kv_count,
                      loader.service_count, loader.check_count)


class Checker(Loader):
    """A ``Loader`` that keeps nothing and holds back what it finds wrong until ``finish``:
    a damaged file is reported by its checksum, which the reader checks only at the end, and
    not by whatever the damage made of the snapshot first."""

    def __init__(self) -> None:
        super().__init__(keep=False)
        self.problem: SnapshotError | None = None

    def feed(self, data: bytes) -> None:
        if self.problem is None:
            try:
                super().feed(data)
            except SnapshotError as exc:
                self.problem = exc

    def finish(self) -> Tables:
        if self.problem is None:
            try:
                return super().finish()
            except SnapshotError as exc:
                self.problem = exc
        raise BadBackup(f"the backup holds no valid store snapshot ({self.problem})")


def read(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The store snapshot inside a backup given as chunks; raises ``BadBackup`` (at the end at
    the latest) unless the file is whole and intact."""
    reader = Reader()
    for chunk in chunks:
        yield from reader.feed(chunk)
    reader.finish()


def read_file(path: str, block: int = 1 << 20) -> Iterator[bytes]:
    """The chunks of a file, a block at a time."""
    with open(path, "rb") as f:
        while chunk := f.read(block):
            yield chunk
