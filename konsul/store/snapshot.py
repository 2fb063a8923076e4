"""The store's snapshot: the whole replicated state, written and read as a stream.

A snapshot is what a Raft snapshot file holds, what InstallSnapshot sends, and the body of a
backup (``konsul.backup.file``). It is never one object in memory: ``encode`` yields it in
pieces of about ``BLOCK_BYTES`` while it walks a capture of the tables, and ``Loader`` takes it
back in pieces cut anywhere, building new tables as they arrive. Memory for either is the state
itself plus one block, never a second copy of the whole.

Format 3 is a sequence of msgpack objects::

    head     {"format": 3, "last_applied", "kv_index", "services_index", "checks_index",
              "kv_count", "service_count", "check_count"}
    kv       zero or more maps {key: [value, flags, create_index, modify_index]}, keys
             ascending across them, each at most BLOCK_ROWS keys or about BLOCK_BYTES
    nil      the end of the KV table
    services [row, ...]   (``catalog._SERVICE_ROW`` order, sorted by id)
    checks   [row, ...]   (``catalog._CHECK_ROW`` order, sorted by id)
    acl      {"index", "bootstrapped", "policies", "tokens"}

Two replicas at the same ``last_applied`` write the same bytes (block cuts depend only on the
rows). Formats 1 and 2 (one msgpack map holding everything; 1 with text values) still load.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from typing import Any

import msgpack

from konsul.store.acl import AclTable
from konsul.store.catalog import Catalog
from konsul.store.kv import KVTable, Row

FORMAT = 3
MAP_FORMAT = 2  # one map, values as bytes
TEXT_VALUES_FORMAT = 1  # one map, values as text

BLOCK_BYTES = 1 << 20
BLOCK_ROWS = 8192
# The largest single object a loader accepts (a KV block, the service list): far above any
# real one, so that a garbled length cannot make it buffer without bound.
_MAX_OBJECT = 1 << 31


class SnapshotError(ValueError):
    """Bytes that are not a store snapshot (or not a whole one)."""


@dataclass(frozen=True, slots=True)
class Capture:
    """The tables at one applied index, taken by pointer copies (rows are immutable)."""

    head: dict[str, int]
    kv_keys: list[str]
    kv_rows: dict[str, Row]
    services: list[list[Any]]
    checks: list[list[Any]]
    acl: dict[str, Any]


def capture(kv: KVTable, catalog: Catalog, acl: AclTable, last_applied: int) -> Capture:
    keys, rows = kv.capture()
    services, checks = catalog.dump()
    head = {
        "format": FORMAT,
        "last_applied": last_applied,
        "kv_index": kv.index,
        "services_index": catalog.services_index,
        "checks_index": catalog.checks_index,
        "kv_count": len(keys),
        "service_count": len(services),
        "check_count": len(checks),
    }
    return Capture(head, keys, rows, services, checks, acl.dump())


def encode(snap: Capture) -> Iterator[bytes]:
    """The snapshot's bytes, a piece at a time (a KV block per piece)."""
    pack = msgpack.Packer().pack
    yield pack(snap.head)
    yield from _kv_blocks(snap.kv_keys, snap.kv_rows, pack)
    yield pack(None)
    yield pack(snap.services)
    yield pack(snap.checks)
    yield pack(snap.acl)


def _kv_blocks(
    keys: list[str], rows: dict[str, Row], pack: Callable[[object], bytes]
) -> Iterator[bytes]:
    """The KV rows in blocks of at most BLOCK_ROWS keys, cut once their values pass
    BLOCK_BYTES. (Built with C-level map/accumulate/zip over windows of keys: a Python loop
    per row would cost more than the encoding itself.)"""
    value_of = itemgetter(0)
    for pos in range(0, len(keys), BLOCK_ROWS):
        window = keys[pos:pos + BLOCK_ROWS]
        values = list(map(rows.__getitem__, window))
        ends = list(accumulate(map(len, map(value_of, values))))
        start = 0
        while start < len(window):
            base = ends[start - 1] if start else 0
            cut = min(bisect_left(ends, base + BLOCK_BYTES, start) + 1, len(window))
            yield pack(dict(zip(window[start:cut], values[start:cut], strict=True)))
            start = cut


@dataclass(slots=True)
class Tables:
    """What a snapshot holds, ready to be installed in a ``StateMachine``."""

    kv: KVTable
    catalog: Catalog
    acl: AclTable
    last_applied: int


class _Part(enum.Enum):
    HEAD = "head"
    KV = "kv"
    SERVICES = "services"
    CHECKS = "checks"
    ACL = "acl"
    DONE = "done"


class Loader:
    """Builds tables from a snapshot fed in pieces cut anywhere: ``feed`` each, then ``finish``.

    ``reindex``: give every row (keys, instances, checks, ACL objects) and every table that
    index instead of the one the snapshot holds: an online restore makes them all new at the
    index where it begins (``StateMachine`` explains why). ``keep=False`` checks the structure
    and counts, but keeps nothing (to verify a file without holding its state).

    Anything that is not a snapshot raises ``SnapshotError``, from ``feed`` or ``finish``.
    """

    def __init__(
        self, *, reindex: int | None = None, keep: bool = True, strict: bool = False
    ) -> None:
        self._unpacker = msgpack.Unpacker(
            use_list=False, raw=False, max_buffer_size=_MAX_OBJECT
        )
        self._reindex = reindex
        self._keep = keep
        self._strict = strict or not keep
        self._part = _Part.HEAD
        self._head: dict[str, Any] = {}
        self._rows: dict[str, Row] = {}
        self._service_rows: tuple[Any, ...] = ()
        self._catalog = Catalog()
        self._acl = AclTable()
        self._legacy_text = False
        self.kv_count = 0
        self.service_count = 0
        self.check_count = 0
        self.bytes_fed = 0

    @property
    def complete(self) -> bool:
        return self._part is _Part.DONE

    @property
    def last_applied(self) -> int:
        return int(self._head.get("last_applied", 0))

    def feed(self, data: bytes) -> None:
        self.bytes_fed += len(data)
        try:
            self._unpacker.feed(data)
            for obj in self._unpacker:
                self._take(obj)
        except SnapshotError:
            raise
        except Exception as exc:  # msgpack's own errors, a row of the wrong shape
            raise SnapshotError(f"not a store snapshot: {exc!r}") from None

    def finish(self) -> Tables:
        if self._part is not _Part.DONE:
            raise SnapshotError(
                f"the snapshot ends early (in its {self._part.value} part, after "
                f"{self.bytes_fed} bytes): truncated?"
            )
        kv = KVTable()
        head = self._head
        index = self._reindex
        try:
            kv.load(self._rows, index if index is not None else int(head["kv_index"]),
                    text_values=self._legacy_text)
            self._catalog.services_index = index if index is not None else int(
                head["services_index"])
            self._catalog.checks_index = index if index is not None else int(head["checks_index"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"not a store snapshot: {exc!r}") from None
        if index is not None:
            _reindex_acl(self._acl, index)
        self._rows = {}
        return Tables(kv, self._catalog, self._acl, self.last_applied)

    # -- the parts, in order ---------------------------------------------------------------

    def _take(self, obj: object) -> None:
        part = self._part
        if part is _Part.KV:
            if obj is None:
                self._part = _Part.SERVICES
            elif type(obj) is dict:
                self._kv_block(obj)
            else:
                raise SnapshotError("a KV block is not a map")
        elif part is _Part.HEAD:
            self._take_head(obj)
        elif part is _Part.SERVICES:
            self._services(_rows_of(obj, "services"))
            self._part = _Part.CHECKS
        elif part is _Part.CHECKS:
            self._checks(_rows_of(obj, "checks"))
            self._part = _Part.ACL
        elif part is _Part.ACL:
            self._take_acl(obj)
            self._part = _Part.DONE
        else:
            raise SnapshotError("data after the end of the snapshot")

    def _take_head(self, obj: object) -> None:
        if type(obj) is not dict:
            raise SnapshotError("not a store snapshot (it does not start with a map)")
        fmt = obj.get("format")
        if fmt == FORMAT:
            for name in ("last_applied", "kv_index", "services_index", "checks_index"):
                if type(obj.get(name)) is not int:
                    raise SnapshotError(f"not a store snapshot (no {name} in its head)")
            self._head = obj
            self._part = _Part.KV
        elif fmt in (MAP_FORMAT, TEXT_VALUES_FORMAT) and "kv" in obj:
            self._take_map(obj, text=fmt == TEXT_VALUES_FORMAT)
        else:
            raise SnapshotError(f"unknown snapshot format {fmt!r}")

    def _take_map(self, raw: dict[str, Any], *, text: bool) -> None:
        """A format 1 or 2 snapshot: the whole state in one map."""
        if type(raw["kv"]) is not dict:
            raise SnapshotError("the snapshot's kv table is not a map")
        self._head = raw
        self._legacy_text = text
        self._kv_block(raw["kv"])
        self._services(_rows_of(raw["services"], "services"))
        self._checks(_rows_of(raw["checks"], "checks"))
        self._take_acl(raw.get("acl"))  # absent in snapshots from before ACLs
        self._part = _Part.DONE

    def _kv_block(self, block: dict[str, Any]) -> None:
        self.kv_count += len(block)
        index = self._reindex
        if index is not None:
            # (the unpacking checks each row's shape as it goes)
            block = {k: (v, f, index, index) for k, (v, f, _, _) in block.items()}
        if self._strict:
            for key, row in block.items():
                _check_row(key, row, self._legacy_text)
        if self._keep:
            self._rows.update(block)

    def _services(self, rows: tuple[Any, ...]) -> None:
        self.service_count = len(rows)
        self._service_rows = rows

    def _checks(self, rows: tuple[Any, ...]) -> None:
        """Both catalog tables at once (a catalog loads them together)."""
        self.check_count = len(rows)
        catalog = Catalog()
        catalog.load(self._service_rows, rows, 0, 0)  # (checks every row's shape)
        self._service_rows = ()
        index = self._reindex
        if index is not None:
            for svc in catalog.services.values():
                svc.create_index = svc.modify_index = svc.heartbeat_index = index
            for chk in catalog.checks.values():
                chk.create_index = chk.modify_index = index
                chk.status_index = chk.update_index = index
        if self._keep:
            self._catalog = catalog

    def _take_acl(self, raw: object) -> None:
        if raw is not None and type(raw) is not dict:
            raise SnapshotError("the snapshot's ACL table is not a map")
        acl = AclTable.load(raw)  # (checks its shape)
        if self._keep:
            self._acl = acl


def _rows_of(obj: object, what: str) -> tuple[Any, ...]:
    if type(obj) is not tuple:
        raise SnapshotError(f"the snapshot's {what} are not a list")
    return obj


def _check_row(key: object, row: object, text: bool) -> None:
    if type(key) is not str:
        raise SnapshotError("a KV key is not text")
    if type(row) is not tuple or len(row) != 4:
        raise SnapshotError("a KV row is not [value, flags, create_index, modify_index]")
    value, flags, create, modify = row
    if (type(value) is not (str if text else bytes) or type(flags) is not int
            or type(create) is not int or type(modify) is not int):
        raise SnapshotError("a KV row holds a field of the wrong type")


def _reindex_acl(acl: AclTable, index: int) -> None:
    for policy in acl.policies.values():
        if policy.create_index or policy.modify_index:  # (the built-in one keeps its zeros)
            policy.create_index = policy.modify_index = index
    for token in acl.tokens.values():
        if token.create_index or token.modify_index:
            token.create_index = token.modify_index = index
    if acl.bootstrapped:
        acl.bootstrapped = index
    acl.index = index


def load(pieces: Iterable[bytes], **options: Any) -> Tables:
    """The tables of a whole snapshot given as pieces (``Loader``'s options)."""
    loader = Loader(**options)
    for piece in pieces:
        loader.feed(piece)
    return loader.finish()
