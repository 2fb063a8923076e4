"""The state machine's commands as types: one dataclass per op, and their log encoding.

A command travels in the Raft log as the msgpack bytes of a small map, ``{"op": <op>,
<field>: <value>, ...}``, with the fields in the order the dataclass declares them. That wire
form is fixed: logs and snapshots written by earlier versions must still apply. ``encode`` and
``decode`` here are the only code that turns commands into bytes and back; validation of client
input happens before a command is built (``konsul.store.commands``), so a decoded command is
trusted to have the types its fields say (a forged one fails in ``StateMachine.apply``, which
answers it ``Rejected(MALFORMED)``).

Nested values: a transaction's ops are ``TxnOp`` rows and an import's keys ``KVItem`` rows,
both msgpack arrays on the wire; a registered instance is a ``ServiceDef`` map holding
``CheckDef`` maps.

KV values are bytes, msgpack ``bin`` on the wire. Entries written before values were bytes hold
them as msgpack ``str`` (the only values there were then: UTF-8 text): the readers take those
as their UTF-8 bytes, so such a log applies to exactly the same state.

Commands are plain (not frozen) slotted dataclasses, as the store's results are: a frozen
dataclass's ``__init__`` costs three times as much, and two of these are built per write.

``command_table()`` renders the table in ``konsul.store.machine``'s docstring from these types
(a test keeps the two equal). Adding a command: a dataclass here (``OP``, ``RESULT``), its place
in ``Command``, a builder in ``konsul.store.commands``, a ``case`` in ``StateMachine._dispatch``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple, get_args

import msgpack

# ----------------------------------------------------------------------------- nested values


class TxnOp(NamedTuple):
    """One operation of a transaction (see ``commands.txn`` for what each verb does)."""

    verb: str  # set | cas | delete | delete-cas | get | check-index
    key: str
    value: bytes | None  # set, cas
    flags: int  # set, cas (0 otherwise)
    expected_index: int | None  # the modify index a cas, delete-cas, check-index requires


class KVItem(NamedTuple):
    """One key of an import chunk."""

    key: str
    value: bytes
    flags: int


def stored_bytes(value: bytes | str) -> bytes:
    """A KV value as read from the log: bytes, or text from a log written before values were
    bytes (always UTF-8: the API took nothing else then)."""
    return value if type(value) is bytes else value.encode()  # type: ignore[union-attr]


@dataclass(slots=True)
class CheckDef:
    """A check as registered (normalised by ``commands.normalize_service``).

    ``kind`` is http, tcp or ttl; ``target`` the URL or ``host:port`` (empty for ttl);
    durations in seconds: ``interval`` and ``timeout`` for http/tcp, ``ttl`` for ttl checks,
    ``dca`` = deregister_critical_after (``None`` = not set)."""

    id: str
    name: str
    kind: str
    target: str
    interval: float | None
    timeout: float | None
    ttl: float | None
    dca: float | None


@dataclass(slots=True)
class ServiceDef:
    """An instance as registered (normalised by ``commands.normalize_service``); ``ttl`` is the
    heartbeat interval in seconds (``None``: no heartbeat required)."""

    id: str
    name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    ttl: float | None
    checks: list[CheckDef]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ServiceDef:
        checks = [CheckDef(*_values(CheckDef, c)) for c in raw["checks"]]
        return cls(
            raw["id"], raw["name"], raw["address"], raw["port"], raw["tags"], raw["meta"],
            raw["ttl"], checks,
        )


# ----------------------------------------------------------------------------- commands


@dataclass(slots=True)
class KVSet:
    """Set a key; ``cas``: None = unconditional, 0 = only if absent, N = only at modify_index N."""

    OP: ClassVar[str] = "kv_set"
    RESULT: ClassVar[str] = "KVWritten | Rejected(CONFLICT)"
    key: str
    value: bytes
    flags: int
    cas: int | None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> KVSet:
        return cls(raw["key"], stored_bytes(raw["value"]), raw["flags"], raw["cas"])


@dataclass(slots=True)
class KVDelete:
    """Delete a key, or with ``recurse`` every key under the prefix ``key``."""

    OP: ClassVar[str] = "kv_delete"
    RESULT: ClassVar[str] = "KVDeleted | Rejected(CONFLICT)"
    key: str
    cas: int | None
    recurse: bool


@dataclass(slots=True)
class Txn:
    """All-or-nothing operations on KV, in one log entry."""

    OP: ClassVar[str] = "txn"
    RESULT: ClassVar[str] = "TxnDone | Rejected(CONFLICT, errors)"
    ops: list[TxnOp]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Txn:
        return cls([
            TxnOp(verb, key, None if value is None else stored_bytes(value), flags, expected)
            for verb, key, value, flags, expected in raw["ops"]
        ])


@dataclass(slots=True)
class ServiceRegister:
    """Register (upsert by id) an instance with its checks."""

    OP: ClassVar[str] = "service_register"
    RESULT: ClassVar[str] = "ServiceWritten | Rejected(CONFLICT)"
    service: ServiceDef

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ServiceRegister:
        return cls(ServiceDef.from_wire(raw["service"]))


@dataclass(slots=True)
class _ServiceId:
    id: str


@dataclass(slots=True)
class ServiceDeregister(_ServiceId):
    OP: ClassVar[str] = "service_deregister"
    RESULT: ClassVar[str] = "ServiceWritten | Rejected(NOT_FOUND)"


@dataclass(slots=True)
class ServiceHeartbeat(_ServiceId):
    OP: ClassVar[str] = "service_heartbeat"
    RESULT: ClassVar[str] = "ServiceWritten | Rejected(NOT_FOUND)"


@dataclass(slots=True)
class _CheckReport:
    id: str
    status: str
    output: str


@dataclass(slots=True)
class CheckTTL(_CheckReport):
    """A status report through the API: TTL checks only."""

    OP: ClassVar[str] = "check_ttl"
    RESULT: ClassVar[str] = "CheckWritten | Rejected(NOT_FOUND|INVALID)"


@dataclass(slots=True)
class CheckSet(_CheckReport):
    """A status report from the leader's check runner: any kind of check."""

    OP: ClassVar[str] = "check_set"
    RESULT: ClassVar[str] = "CheckWritten | Rejected(NOT_FOUND)"


@dataclass(slots=True)
class CheckProbe(_CheckReport):
    """A probe's result as a member saw it against its replica: applies only if the check's
    ``update_index`` is still ``seen``. Results travel from any member through the leader, so
    one may arrive after a newer report (another member's, once the check moved) was
    committed; the newer one wins on every replica alike."""

    OP: ClassVar[str] = "check_probe"
    RESULT: ClassVar[str] = "CheckWritten | Ignored"
    seen: int


@dataclass(slots=True)
class _LeaderDecision:
    """A decision the leader took on a timer: it applies only if the index it was based on
    (``seen``) is still current, so a heartbeat or report committed meanwhile wins."""

    id: str
    seen: int


@dataclass(slots=True)
class ServiceExpire(_LeaderDecision):
    """Heartbeats stopped (``seen``: the service's heartbeat_index)."""

    OP: ClassVar[str] = "service_expire"
    RESULT: ClassVar[str] = "ServiceWritten | Ignored"


@dataclass(slots=True)
class CheckExpire(_LeaderDecision):
    """A TTL check's TTL ran out (``seen``: its update_index)."""

    OP: ClassVar[str] = "check_expire"
    RESULT: ClassVar[str] = "CheckWritten | Ignored"


@dataclass(slots=True)
class CheckReap(_LeaderDecision):
    """Critical for its deregister_critical_after (``seen``: its status_index)."""

    OP: ClassVar[str] = "check_reap"
    RESULT: ClassVar[str] = "ServiceWritten | Ignored"


@dataclass(slots=True)
class Import:
    """One chunk of an import, applied atomically."""

    OP: ClassVar[str] = "import"
    RESULT: ClassVar[str] = "Imported | Rejected(CONFLICT)"
    kv: list[KVItem]
    services: list[ServiceDef]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Import:
        # Check every row's shape now: a malformed one (only a forged command: builders never
        # make them) fails before anything changed, keeping the chunk atomic even then.
        kv = [KVItem(key, stored_bytes(value), flags) for key, value, flags in raw["kv"]]
        for item in kv:
            if type(item.key) is not str or type(item.flags) is not int:
                raise ValueError(f"malformed import row {item!r}")
        return cls(kv, [ServiceDef.from_wire(s) for s in raw["services"]])


@dataclass(slots=True)
class AclPolicySet:
    """Create or replace a policy; ``rules`` in their JSON form (``konsul.acl.rules``)."""

    OP: ClassVar[str] = "acl_policy_set"
    RESULT: ClassVar[str] = "AclWritten | Rejected(CONFLICT)"
    id: str
    name: str
    description: str
    rules: dict[str, Any]


@dataclass(slots=True)
class AclPolicyDelete:
    OP: ClassVar[str] = "acl_policy_delete"
    RESULT: ClassVar[str] = "AclDeleted | Rejected(NOT_FOUND|CONFLICT)"
    id: str


@dataclass(slots=True)
class AclTokenSet:
    """Create or update a token. Only the secret's SHA-256 travels (``hash``; ``""``: keep)."""

    OP: ClassVar[str] = "acl_token_set"
    RESULT: ClassVar[str] = "AclWritten | Rejected(INVALID|CONFLICT)"
    id: str  # the accessor id
    hash: str
    description: str
    policies: list[str]


@dataclass(slots=True)
class AclTokenDelete:
    OP: ClassVar[str] = "acl_token_delete"
    RESULT: ClassVar[str] = "AclDeleted | Rejected(NOT_FOUND|CONFLICT)"
    id: str  # the accessor id


@dataclass(slots=True)
class AclBootstrap:
    """The first management token: once per cluster, or the configured initial one."""

    OP: ClassVar[str] = "acl_bootstrap"
    RESULT: ClassVar[str] = "AclWritten | Rejected(CONFLICT) | Ignored"
    id: str  # the accessor id
    hash: str
    description: str
    initial: bool


@dataclass(slots=True)
class RestoreBegin:
    """Start an online restore of a snapshot of ``size`` bytes (its SHA-256: ``sha256``), taken
    at ``index``@``term``. Writes are refused until its commit or abort."""

    OP: ClassVar[str] = "restore_begin"
    RESULT: ClassVar[str] = "Restoring"
    id: str
    size: int
    sha256: bytes
    index: int
    term: int


@dataclass(slots=True)
class RestoreChunk:
    """The next ``data`` of restore ``id``, at byte ``offset`` of its snapshot."""

    OP: ClassVar[str] = "restore_chunk"
    RESULT: ClassVar[str] = "Restoring | Rejected(CONFLICT|INVALID)"
    id: str
    offset: int
    data: bytes


@dataclass(slots=True)
class RestoreCommit:
    """Replace the whole state with restore ``id``'s snapshot, all of it received and checked."""

    OP: ClassVar[str] = "restore_commit"
    RESULT: ClassVar[str] = "Restored | Rejected(CONFLICT|INVALID)"
    id: str


@dataclass(slots=True)
class RestoreAbort:
    """Drop restore ``id`` (nothing changed); writes are accepted again."""

    OP: ClassVar[str] = "restore_abort"
    RESULT: ClassVar[str] = "Ignored"
    id: str
    reason: str


Command = (
    KVSet
    | KVDelete
    | Txn
    | ServiceRegister
    | ServiceDeregister
    | ServiceHeartbeat
    | CheckTTL
    | CheckSet
    | CheckProbe
    | ServiceExpire
    | CheckExpire
    | CheckReap
    | Import
    | AclPolicySet
    | AclPolicyDelete
    | AclTokenSet
    | AclTokenDelete
    | AclBootstrap
    | RestoreBegin
    | RestoreChunk
    | RestoreCommit
    | RestoreAbort
)

# Field names in wire order, per dataclass (commands and nested maps).
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (*get_args(Command), ServiceDef, CheckDef)
}


def _values(cls: type, raw: Mapping[str, Any]) -> list[Any]:
    """The fields of ``cls`` read from a wire map, in order."""
    return [raw[name] for name in _FIELDS[cls]]


# ----------------------------------------------------------------------------- codec


def _to_wire(obj: object) -> dict[str, Any]:
    """msgpack's hook for the dataclasses above: a command becomes its ``op`` map, a nested
    ``ServiceDef`` / ``CheckDef`` its field map (``TxnOp``/``KVItem`` pack as arrays)."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        raise TypeError(f"not a store command or value: {cls.__name__}")
    op: str | None = getattr(cls, "OP", None)
    out: dict[str, Any] = {} if op is None else {"op": op}
    for name in names:
        out[name] = getattr(obj, name)
    return out


def encode(command: Command | Mapping[str, Any]) -> bytes:
    """The log bytes of a command. A plain map is packed as it is: that is how tests forge
    commands no builder would make."""
    data: bytes = msgpack.packb(command, default=_to_wire)
    return data


def reader(op: str) -> Callable[[Mapping[str, Any]], Command]:
    """What reads the wire map of a command with this ``op`` (KeyError for an unknown op). The
    reader raises KeyError for a missing field; extra keys, which no builder writes, are
    ignored, as they always were."""
    return _READERS[op]


def _reader(cls: type[Command]) -> Callable[[Mapping[str, Any]], Command]:
    nested: Callable[[Mapping[str, Any]], Command] | None = getattr(cls, "from_wire", None)
    return nested or (lambda raw: cls(*_values(cls, raw)))


_READERS = {cls.OP: _reader(cls) for cls in get_args(Command)}


def decode(data: bytes) -> Command:
    """The command encoded in ``data``; raises for bytes that are not one."""
    raw = msgpack.unpackb(data)
    return reader(raw["op"])(raw)


# ----------------------------------------------------------------------------- documentation


def command_table() -> str:
    """The command table of ``konsul.store.machine``'s docstring, rendered from the types."""
    rows = [("op", "fields", "result")]
    for cls in get_args(Command):
        rows.append((cls.OP, ", ".join(_field_text(cls, name) for name in _FIELDS[cls]),
                     cls.RESULT))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, _line(rows[0], widths), rule, *(_line(r, widths) for r in rows[1:]), rule]
    nested = [
        f"{t.__name__}: [{', '.join(t._fields)}]" for t in (TxnOp, KVItem)
    ] + [f"{t.__name__}: {{{', '.join(_FIELDS[t])}}}" for t in (ServiceDef, CheckDef)]
    return "\n".join([*lines, "", *nested])


def _field_text(cls: type, name: str) -> str:
    kind: str = next(k.__annotations__[name] for k in cls.__mro__ if name in k.__annotations__)
    # Only the nested types of this module are named: they are listed under the table.
    if kind.startswith("list[") and kind[5].isupper():
        return f"{name}: [{kind[5:-1]}]"
    return f"{name}: {kind}" if kind[0].isupper() else name


def _line(row: tuple[str, str, str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
