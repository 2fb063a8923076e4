"""The values the store hands out: stored objects (read side), apply results, change events.

Result and event classes are plain (not frozen) slotted dataclasses: a frozen dataclass's
``__init__`` goes through ``object.__setattr__`` and costs three times as much on the apply path.
Treat them as read-only all the same.

Everything here is plain data. ``KVEntry`` objects are built fresh for each read (the table keeps
a compact representation). ``Service`` and ``Check`` objects are the stored ones: the store never
mutates an object once stored (a change stores a new one), so a reader may keep them as a
consistent picture, but must not mutate them.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from konsul.durations import format_duration
from konsul.errors import BadRequest, Conflict, KonsulError, NotFound, Unavailable

JSON = dict[str, Any]

Status = Literal["passing", "warning", "critical"]
STATUSES: tuple[str, ...] = ("passing", "warning", "critical")
# Aggregation order: the worst status of an instance's checks wins.
STATUS_RANK = {"passing": 0, "warning": 1, "critical": 2}

CheckKind = Literal["http", "tcp", "ttl"]
CHECK_KINDS: tuple[str, ...] = ("http", "tcp", "ttl")

TTL_INITIAL_OUTPUT = "TTL not yet updated"
TTL_EXPIRED_OUTPUT = "TTL expired"
HEARTBEAT_OUTPUT = "Service heartbeat received"
NOT_CHECKED_OUTPUT = "Not yet checked"


# ----------------------------------------------------------------------------- stored objects


@dataclass(slots=True)
class KVEntry:
    key: str
    value: bytes
    flags: int
    create_index: int
    modify_index: int

    def to_json(self) -> JSON:
        """The documented GET /kv/<key> body."""
        return {
            "key": self.key,
            **value_json(self.value),
            "flags": self.flags,
            "create_index": self.create_index,
            "modify_index": self.modify_index,
        }


def value_json(value: bytes) -> JSON:
    """A value as the native API's JSON shows it: ``{"value": <text>}`` when it is UTF-8 text
    (every value ever written as a JSON string is), otherwise ``{"value": null, "value_base64":
    <base64>}``: nothing lost, and a client that expects text sees a null, never garbled text."""
    try:
        return {"value": value.decode()}
    except UnicodeDecodeError:
        return {"value": None, "value_base64": base64.b64encode(value).decode()}


@dataclass(slots=True)
class Check:
    """One health check of one service instance.

    ``kind`` says which of ``http`` (a URL), ``tcp`` (``host:port``) or ``ttl`` the check is;
    ``target`` holds the URL or address (empty for ``ttl``). Durations are seconds (``None`` =
    not set); ``ttl`` is the TTL of a TTL check.

    ``status_index`` is the index at which ``status`` last changed (the leader uses it to decide
    ``deregister_critical_after``); ``update_index`` is the index of the last status report of any
    kind, changed or not (the leader uses it to decide a TTL check's expiry). Neither wakes
    blocking reads: only ``modify_index`` (status or output changed, or the definition) does.
    """

    id: str
    name: str
    service_id: str
    kind: str
    target: str
    interval: float | None
    timeout: float | None
    ttl: float | None
    deregister_critical_after: float | None
    status: str
    output: str
    create_index: int
    modify_index: int
    status_index: int
    update_index: int

    def definition(self) -> JSON:
        """The portable definition (what /register accepts and /export writes)."""
        out: JSON = {"id": self.id, "name": self.name}
        if self.kind == "ttl":
            out["ttl"] = _dur(self.ttl)
        else:
            out[self.kind] = self.target
            if self.interval is not None:
                out["interval"] = _dur(self.interval)
            if self.timeout is not None:
                out["timeout"] = _dur(self.timeout)
        if self.deregister_critical_after is not None:
            out["deregister_critical_after"] = _dur(self.deregister_critical_after)
        return out

    def to_json(self) -> JSON:
        """The definition plus its state, as /health/checks lists it."""
        out = self.definition()
        out["type"] = self.kind
        out["service_id"] = self.service_id
        out["status"] = self.status
        out["output"] = self.output
        out["create_index"] = self.create_index
        out["modify_index"] = self.modify_index
        return out


@dataclass(slots=True)
class Service:
    """One registered service instance; ``check_ids`` in registration order.

    ``ttl`` is the heartbeat interval in seconds (``None`` = no heartbeat required);
    ``heartbeat_index`` is the index of the last register or heartbeat command (the leader uses
    it to decide that heartbeats stopped). A heartbeat changes neither ``modify_index`` nor
    ``services_index``: only what a reader can see does.
    """

    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: dict[str, str]
    check_ids: tuple[str, ...]
    ttl: float | None
    create_index: int
    modify_index: int
    heartbeat_index: int

    def definition(self, checks: list[Check]) -> JSON:
        """The portable instance (what /register accepts and /export writes)."""
        out: JSON = {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "tags": list(self.tags),
            "meta": dict(self.meta),
            "checks": [c.definition() for c in checks],
        }
        if self.ttl is not None:
            out["ttl"] = _dur(self.ttl)
        return out

    def to_json(self, checks: list[Check], status: str) -> JSON:
        """The instance as /services lists it: definition, checks with state, indices, status."""
        out = self.definition(checks)
        out["checks"] = [c.to_json() for c in checks]
        out["status"] = status
        out["create_index"] = self.create_index
        out["modify_index"] = self.modify_index
        return out


def _dur(seconds: float | None) -> str | None:
    return None if seconds is None else format_duration(seconds)


# ----------------------------------------------------------------------------- apply results


@dataclass(slots=True)
class KVWritten:
    """A KV set/cas that took effect: the documented PUT /kv/<key> body."""

    key: str
    create_index: int
    modify_index: int

    def to_json(self) -> JSON:
        return {
            "key": self.key,
            "create_index": self.create_index,
            "modify_index": self.modify_index,
        }


@dataclass(slots=True)
class KVDeleted:
    """A delete that took effect (``deleted`` may be 0: deleting nothing is not an error)."""

    deleted: int

    def to_json(self) -> JSON:
        return {"deleted": self.deleted}


@dataclass(slots=True)
class TxnDone:
    """A transaction that committed; one result per op, in order (see ``commands.txn``)."""

    index: int
    results: list[JSON]

    def to_json(self) -> JSON:
        return {"index": self.index, "results": self.results}


@dataclass(slots=True)
class ServiceWritten:
    """A register/deregister/heartbeat that took effect."""

    id: str
    modify_index: int

    def to_json(self) -> JSON:
        return {"id": self.id, "modify_index": self.modify_index}


@dataclass(slots=True)
class CheckWritten:
    """A check status report that took effect."""

    id: str
    status: str
    modify_index: int

    def to_json(self) -> JSON:
        return {"id": self.id, "status": self.status, "modify_index": self.modify_index}


@dataclass(slots=True)
class Imported:
    """One import chunk that took effect; the handler sums these over the chunks."""

    kv: int
    services: int

    def to_json(self) -> JSON:
        return {"kv": self.kv, "services": self.services}


@dataclass(slots=True)
class Restoring:
    """An online restore begun, or one more chunk of it taken: ``received`` bytes so far."""

    id: str
    received: int


@dataclass(slots=True)
class Restored:
    """An online restore committed: the state is the snapshot's, every row at ``index``."""

    id: str
    index: int
    kv: int
    services: int
    checks: int

    def to_json(self) -> JSON:
        return {"index": self.index, "kv_keys": self.kv, "services": self.services,
                "checks": self.checks}


@dataclass(slots=True)
class AclWritten:
    """A policy or token created or updated (``id``: the policy id or token accessor id)."""

    id: str
    modify_index: int

    def to_json(self) -> JSON:
        return {"id": self.id, "modify_index": self.modify_index}


@dataclass(slots=True)
class AclDeleted:
    id: str
    modify_index: int

    def to_json(self) -> JSON:
        return {"deleted": self.id, "modify_index": self.modify_index}


@dataclass(slots=True)
class Ignored:
    """A leader-decided command that no longer applied (e.g. a heartbeat arrived after the
    leader decided the TTL had expired): state unchanged, nothing to report to a client."""

    reason: str


class Reason(enum.Enum):
    """Why a command could not take effect."""

    INVALID = "invalid"  # the state makes the request invalid (a status for a non-TTL check)
    NOT_FOUND = "not found"  # no such instance or check
    CONFLICT = "conflict"  # a CAS mismatch, a failed transaction, a check id owned elsewhere
    MALFORMED = "malformed"  # an entry that is not a valid command (a bug: builders never)
    BUSY = "busy"  # an online restore is under way: writes wait for it (retry shortly)


@dataclass(slots=True)
class Rejected:
    """A command that could not take effect; state is unchanged.

    ``details`` are extra fields for the caller (a CAS mismatch's ``current_index``, a
    transaction's ``errors``); ``to_error()`` is the matching domain exception, which the API
    answers like any other."""

    reason: Reason
    message: str
    details: JSON = field(default_factory=dict)

    def to_error(self) -> KonsulError:
        return _ERRORS[self.reason](self.message, self.details)


_ERRORS: dict[Reason, type[KonsulError]] = {
    Reason.INVALID: BadRequest,
    Reason.NOT_FOUND: NotFound,
    Reason.CONFLICT: Conflict,
    Reason.MALFORMED: KonsulError,
    Reason.BUSY: Unavailable,
}


ApplyResult = (
    KVWritten | KVDeleted | TxnDone | ServiceWritten | CheckWritten | Imported | AclWritten
    | AclDeleted | Restoring | Restored | Ignored | Rejected
)


# ----------------------------------------------------------------------------- change events


EventKind = Literal[
    "service_registered",  # new or updated instance (its checks may have changed)
    "service_deregistered",  # instance and its checks removed (any cause)
    "service_heartbeat",  # heartbeat_index moved (and TTL checks passed)
    "check_updated",  # status report applied (status_index/update_index may have moved)
    "restored",  # the whole state was replaced (restore or first import): rescan everything
]


@dataclass(slots=True)
class Event:
    """What changed in the catalog, for the leader's check runner and TTL timers.

    KV writes emit no events (the hot path stays free of them): watchers of KV compare
    ``StateMachine.kv_index`` instead.
    """

    kind: EventKind
    index: int
    service_id: str = ""
    check_id: str = ""
