"""The KV table: entries, CAS, recursive delete, transactions, ordered listings.

Entries live in a dict as plain tuples ``(value, flags, create_index, modify_index)``: a tuple
of atomic values is the smallest Python object that holds them, and the garbage collector stops
tracking such tuples after its first pass, so a million keys do not lengthen every full
collection. (It does so for exact tuples only: a ``NamedTuple`` row would stay tracked, which is
why ``Row`` is a plain tuple, always unpacked into named variables, never indexed.) Keys are
also kept in a ``SortedKeys`` for prefix listings. Reads build ``KVEntry`` objects on the way
out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from konsul.store.schema import TxnOp
from konsul.store.sortedkeys import SortedKeys
from konsul.store.types import (
    JSON,
    KVDeleted,
    KVEntry,
    KVWritten,
    Reason,
    Rejected,
    TxnDone,
    value_json,
)

Row = tuple[bytes, int, int, int]  # value, flags, create_index, modify_index
_MAX_CHAR = chr(0x10FFFF)


def _entry(key: str, row: Row) -> KVEntry:
    value, flags, create_index, modify_index = row
    return KVEntry(key, value, flags, create_index, modify_index)


def _modify_index(row: Row | None) -> int:
    """The row's modify index, 0 for an absent key (what a CAS compares with)."""
    if row is None:
        return 0
    _, _, _, modify_index = row
    return modify_index


def _create_index(row: Row | None, index: int) -> int:
    """The create index of a write at ``index`` over ``row`` (absent: this write creates it)."""
    if row is None:
        return index
    _, _, create_index, _ = row
    return create_index


def _cas_failed(key: str, expected: int, current: int) -> Rejected:
    if expected == 0:
        message = f"CAS failed: key {key!r} already exists (modify_index {current})."
    elif current == 0:
        message = f"CAS failed: key {key!r} does not exist (expected modify_index {expected})."
    else:
        message = (
            f"CAS failed: key {key!r} has modify_index {current}, not {expected}."
        )
    return Rejected(Reason.CONFLICT, message, {"key": key, "current_index": current})


def _op_error(i: int, message: str) -> JSON:
    return {"op_index": i, "message": message}


class KVTable:
    __slots__ = ("_keys", "_rows", "index")

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._keys = SortedKeys()
        self.index = 0  # highest log index that changed this table (deletes included)

    # ------------------------------------------------------------------------- reads

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> KVEntry | None:
        row = self._rows.get(key)
        return None if row is None else _entry(key, row)

    def _under(self, prefix: str) -> Iterator[str]:
        for key in self._keys.iter_from(prefix):
            if not key.startswith(prefix):
                return
            yield key

    def _walk(self, prefix: str, separator: str) -> Iterator[tuple[str, bool]]:
        """(name, is_entry) in order under prefix, rolling up everything past the first
        separator after the prefix into one folder name ``prefix + part + separator``. A key
        that is exactly such a folder name is reported once, as an entry."""
        start = prefix
        plen = len(prefix)
        while True:
            folder = None
            for key in self._keys.iter_from(start):
                if not key.startswith(prefix):
                    return
                cut = key.find(separator, plen)
                if cut == -1:
                    yield key, True
                    continue
                folder = key[: cut + len(separator)]
                yield folder, folder == key
                break
            if folder is None:
                return
            # Skip every key under the folder: restart at the first string after all of them
            # (found by scanning only if the folder ends with the largest code point).
            if folder[-1] != _MAX_CHAR:
                start = folder[:-1] + chr(ord(folder[-1]) + 1)
            else:
                after = next(
                    (k for k in self._keys.iter_from(folder) if not k.startswith(folder)), None
                )
                if after is None:
                    return
                start = after

    def entries(self, prefix: str = "", separator: str | None = None) -> list[KVEntry]:
        """Entries whose key starts with prefix, sorted by key. With a separator, only the
        entries up to the next separator (direct children, including a key that ends with the
        separator itself, such as a folder marker)."""
        rows = self._rows
        if not separator:
            return [_entry(k, rows[k]) for k in self._under(prefix)]
        return [_entry(n, rows[n]) for n, is_entry in self._walk(prefix, separator) if is_entry]

    def names(self, prefix: str = "", separator: str | None = None) -> list[str]:
        """Key names under prefix, sorted; with a separator, names are cut after the next
        separator and deduplicated (Consul's ``?keys&separator=/``)."""
        if not separator:
            return list(self._under(prefix))
        return [name for name, _ in self._walk(prefix, separator)]

    # ------------------------------------------------------------------------- writes

    def set(self, index: int, key: str, value: bytes, flags: int, cas: int | None
            ) -> KVWritten | Rejected:
        row = self._rows.get(key)
        if cas is not None:
            current = _modify_index(row)
            if current != cas:
                return _cas_failed(key, cas, current)
        if row is None:
            self._keys.add(key)
        create = _create_index(row, index)
        self._rows[key] = (value, flags, create, index)
        self.index = index
        return KVWritten(key, create, index)

    def delete(self, index: int, key: str, cas: int | None) -> KVDeleted | Rejected:
        row = self._rows.get(key)
        if row is None:
            return KVDeleted(0)
        current = _modify_index(row)
        if cas is not None and current != cas:
            return _cas_failed(key, cas, current)
        del self._rows[key]
        self._keys.remove(key)
        self.index = index
        return KVDeleted(1)

    def delete_prefix(self, index: int, prefix: str) -> KVDeleted:
        doomed = list(self._under(prefix))
        if not doomed:
            return KVDeleted(0)
        rows = self._rows
        if len(doomed) == len(rows):
            rows.clear()
            self._keys.clear()
        else:
            for key in doomed:
                del rows[key]
                self._keys.remove(key)
        self.index = index
        return KVDeleted(len(doomed))

    def put(self, index: int, key: str, value: bytes, flags: int) -> None:
        """Unconditional set (import)."""
        row = self._rows.get(key)
        if row is None:
            self._keys.add(key)
        self._rows[key] = (value, flags, _create_index(row, index), index)
        self.index = index

    def txn(self, index: int, ops: list[TxnOp]) -> TxnDone | Rejected:
        """All-or-nothing: ops run against an overlay of pending changes; the overlay is
        committed only if no op failed. Every failing op is reported, evaluated against the
        state the earlier ops would have produced."""
        rows = self._rows
        overlay: dict[str, Row | None] = {}
        results: list[JSON] = []
        errors: list[JSON] = []
        for i, (verb, key, value, flags, expected) in enumerate(ops):
            want = 0 if expected is None else expected
            row = overlay[key] if key in overlay else rows.get(key)
            current = _modify_index(row)
            if verb == "set" or verb == "cas":
                if verb == "cas" and current != want:
                    errors.append(_op_error(i, _cas_failed(key, want, current).message))
                    continue
                create = _create_index(row, index)
                # cast: the builder gives every set and cas op a value
                overlay[key] = (cast(bytes, value), flags, create, index)
                results.append({"key": key, "create_index": create, "modify_index": index})
            elif verb == "delete" or verb == "delete-cas":
                if verb == "delete-cas" and row is not None and current != want:
                    errors.append(_op_error(i, _cas_failed(key, want, current).message))
                    continue
                overlay[key] = None
                results.append({"key": key, "deleted": 0 if row is None else 1})
            elif verb == "get":
                if row is None:
                    errors.append(_op_error(i, f"Key {key!r} does not exist."))
                    continue
                results.append(_entry(key, row).to_json())
            elif verb == "check-index":
                if current != want:
                    errors.append(
                        _op_error(i, f"Key {key!r} has modify_index {current}, not {want}.")
                    )
                    continue
                results.append({"key": key, "modify_index": current})
            else:  # pragma: no cover - builders never produce it
                errors.append(_op_error(i, f"Unknown verb {verb!r}."))
        if errors:
            failed = "Transaction failed; nothing was changed."
            return Rejected(Reason.CONFLICT, failed, {"errors": errors})
        changed = False
        for key, new in overlay.items():
            if new is None:
                if key in rows:
                    del rows[key]
                    self._keys.remove(key)
                    changed = True
            else:
                if key not in rows:
                    self._keys.add(key)
                rows[key] = new
                changed = True
        if changed:
            self.index = index
        return TxnDone(index, results)

    # ------------------------------------------------------------------------- persistence

    def capture(self) -> tuple[list[str], dict[str, Row]]:
        """The keys in order and the rows, as they are now: O(n) pointer copies (rows are
        immutable tuples), so a snapshot can be encoded later while applies go on."""
        return self._keys.to_list(), dict(self._rows)

    def load(self, rows: dict[str, Row], index: int, text_values: bool = False) -> None:
        """Replace the table with a snapshot's rows (in key order, as ``frozen`` wrote them),
        decoded with ``use_list=False`` so that each row already is a tuple: the dict is taken
        as it is (copying a million rows would cost more than decoding them). A snapshot from
        before values were bytes (``text_values``) holds them as text: those rows are rebuilt
        with the text's UTF-8 bytes, once."""
        if type(rows) is not dict:
            raise ValueError("the snapshot's kv table is not a map")
        if text_values:
            rows = {k: (_utf8(v), f, c, m) for k, (v, f, c, m) in rows.items()}
        self._rows = rows
        # Sorting already-sorted keys is linear (timsort), and it guards against a foreign order.
        self._keys = SortedKeys(sorted(self._rows))
        self.index = index

    def export(self) -> list[JSON]:
        out: list[JSON] = []
        for key in self._keys:
            value, flags, _, _ = self._rows[key]
            out.append({"key": key, **value_json(value), "flags": flags})
        return out


def _utf8(value: object) -> bytes:
    if type(value) is not str:
        raise ValueError(f"a text snapshot holds a value of type {type(value).__name__}")
    return value.encode()
