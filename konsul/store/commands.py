"""Command builders: validate client input once, here, and encode it as a state-machine command.

Every write reaches the replicated state machine as msgpack bytes of a small map with an ``op``
field. The HTTP layer builds them only through these functions, so validation lives in one place
and malformed input can never reach ``StateMachine.apply`` (which must be deterministic and must
never raise). Builders raise ``konsul.errors.BadRequest`` for malformed input and
``konsul.errors.TooLarge`` for a value beyond 512 KiB, each with a sentence for a person.

Client-facing builders: ``kv_set``, ``kv_delete``, ``txn``, ``service_register``,
``service_deregister``, ``service_heartbeat``, ``check_update``, ``import_document`` /
``import_chunk``. Leader-decided builders (the leader's timers and check runner; the state machine
itself never reads a clock): ``check_update(..., from_runner=True)``, ``service_expire``,
``check_expire``, ``check_reap``. Each leader-decided command carries the index the leader based
its decision on, and applies only if that index is still current: a heartbeat or a report that
was committed in between wins, on every replica alike. ACL builders: ``acl_policy_set``,
``acl_policy_delete``, ``acl_token_set``, ``acl_token_delete``, ``acl_bootstrap`` (a token's
secret never reaches them: only its hash, ``konsul.acl.tokens.hash_secret``). Online restore
builders (``konsul.backup.restore`` drives them, from a file it has already checked):
``restore_begin``, ``restore_chunk``, ``restore_commit``, ``restore_abort``.

Each builder returns the encoded bytes of one command type of ``konsul.store.schema``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from konsul.acl.rules import RuleError, Rules
from konsul.durations import parse_duration
from konsul.errors import BadRequest, TooLarge
from konsul.net import parse_host_port
from konsul.store.schema import (
    AclBootstrap,
    AclPolicyDelete,
    AclPolicySet,
    AclTokenDelete,
    AclTokenSet,
    CheckDef,
    CheckExpire,
    CheckProbe,
    CheckReap,
    CheckSet,
    CheckTTL,
    Import,
    KVDelete,
    KVItem,
    KVSet,
    RestoreAbort,
    RestoreBegin,
    RestoreChunk,
    RestoreCommit,
    ServiceDef,
    ServiceDeregister,
    ServiceExpire,
    ServiceHeartbeat,
    ServiceRegister,
    Txn,
    TxnOp,
    encode,
)
from konsul.store.types import STATUSES

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 512 * 1024
MAX_TXN_OPS = 64
MAX_UINT64 = 2**64 - 1

MAX_NAME_LEN = 256  # service name, service id, check id, check name, tag
MAX_ADDRESS_LEN = 256
MAX_TAGS = 64
MAX_META = 64
MAX_META_KEY_LEN = 128
MAX_META_VALUE_LEN = 512
MAX_CHECKS = 32
MAX_URL_LEN = 2048
MAX_OUTPUT_LEN = 4096  # check output is truncated to this (a runner may capture a whole page)

MAX_DURATION = 3650 * 86400  # ten years: "never" in practice, and far from float overflow
DEFAULT_CHECK_INTERVAL = 10.0
DEFAULT_CHECK_TIMEOUT = 5.0

# Import: one log entry per chunk of at most this many items / about this many bytes, so a
# large import never produces a log entry that stalls replication or a follower's apply.
IMPORT_CHUNK_ITEMS = 500
IMPORT_CHUNK_BYTES = 4 * 1024 * 1024

TXN_VERBS = ("set", "delete", "cas", "delete-cas", "get", "check-index")

# C0 and C1 control characters and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_META_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


# ----------------------------------------------------------------------------- field validation


def validate_key(key: object, *, what: str = "key") -> str:
    """A KV key: non-empty UTF-8, at most 512 bytes, no leading '/', no '..' segment, no
    control character. Returns it unchanged."""
    if type(key) is not str:
        raise BadRequest(f"The {what} must be a string.")
    if not key:
        raise BadRequest(f"The {what} must not be empty.")
    _check_key_text(key, what)
    return key


def validate_prefix(prefix: object) -> str:
    """A KV prefix (listing, recursive delete): like a key, but may be empty."""
    if type(prefix) is not str:
        raise BadRequest("The prefix must be a string.")
    if prefix:
        _check_key_text(prefix, "prefix")
    return prefix


def _check_key_text(key: str, what: str) -> None:
    if len(key) > MAX_KEY_BYTES or not key.isascii():
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadRequest(f"The {what} is not valid UTF-8.") from None
        if size > MAX_KEY_BYTES:
            raise BadRequest(f"The {what} is {size} bytes long; at most {MAX_KEY_BYTES} allowed.")
    if key[0] == "/":
        raise BadRequest(f"The {what} {key!r} must not start with '/'.")
    if ".." in key and ".." in key.split("/"):
        raise BadRequest(f"The {what} {key!r} must not contain a '..' segment.")
    if _CONTROL.search(key):
        raise BadRequest(f"The {what} {key!r} must not contain control characters.")


def validate_value(value: object) -> bytes:
    """A KV value: any bytes, or text (kept as its UTF-8 bytes), of at most 512 KiB (TooLarge
    beyond)."""
    if type(value) is str:
        try:
            value = value.encode()
        except UnicodeEncodeError:
            raise BadRequest("The value is not valid UTF-8.") from None
    if type(value) is not bytes:
        raise BadRequest("The value must be a string.")
    if len(value) > MAX_VALUE_BYTES:
        raise TooLarge(f"The value is {len(value)} bytes long; at most {MAX_VALUE_BYTES} allowed.")
    return value


def value_from_json(fields: Mapping[str, Any]) -> bytes:
    """The value a JSON object of the native API carries: ``value``, text, or ``value_base64``,
    any bytes in base64 (what a value that is not UTF-8 text reads back as). Not both."""
    if "value_base64" not in fields:
        return validate_value(fields.get("value"))
    if fields.get("value") is not None:
        raise BadRequest("Give value or value_base64, not both.")
    encoded = fields["value_base64"]
    if type(encoded) is not str:
        raise BadRequest("The value_base64 must be a base64 string.")
    try:
        return validate_value(base64.b64decode(encoded, validate=True))
    except binascii.Error:
        raise BadRequest("The value_base64 is not valid base64.") from None


def validate_uint(value: object, what: str) -> int:
    """An unsigned 64-bit integer, given as a JSON integer or a decimal string (query string)."""
    if type(value) is str and value.isdigit() and value.isascii():
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_UINT64:
        raise BadRequest(f"The {what} must be an integer between 0 and {MAX_UINT64}.")
    return value


def validate_status(status: object) -> str:
    if type(status) is not str or status not in STATUSES:
        raise BadRequest(f"The status must be one of passing, warning, critical; got {status!r}.")
    return status


def validate_output(output: object) -> str:
    if output is None:
        return ""
    if type(output) is not str:
        raise BadRequest("The output must be a string.")
    output = output[:MAX_OUTPUT_LEN]
    try:
        output.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("The output is not valid UTF-8.") from None
    return output


def validate_id(value: object, what: str) -> str:
    """A service/check id or name: non-empty, at most 256 characters, no '/' (it travels in
    URL paths such as /deregister/<id>), no control characters."""
    text = _text(value, what, MAX_NAME_LEN)
    if not text:
        raise BadRequest(f"The {what} must not be empty.")
    if "/" in text:
        raise BadRequest(f"The {what} {text!r} must not contain '/'.")
    return text


def _text(value: object, what: str, max_len: int) -> str:
    if type(value) is not str:
        raise BadRequest(f"The {what} must be a string.")
    if len(value) > max_len:
        raise BadRequest(f"The {what} is longer than {max_len} characters.")
    if _CONTROL.search(value):
        raise BadRequest(f"The {what} must not contain control characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"The {what} is not valid UTF-8.") from None
    return value


def validate_duration(value: object, what: str) -> float:
    """A positive Go-style duration string ("10s", "1m30s") or a number of seconds; returned in
    seconds, rounded to the millisecond so that export and import spell it the same way."""
    if type(value) is str:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise BadRequest(f"The {what} is invalid: {exc}.") from None
    elif type(value) in (int, float):
        seconds = float(value)  # type: ignore[arg-type]
    else:
        raise BadRequest(f"The {what} must be a duration string such as '10s'.")
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise BadRequest(f"The {what} must be at most {MAX_DURATION // 86400} days.")
    seconds = round(seconds * 1000) / 1000
    if seconds <= 0:
        raise BadRequest(f"The {what} must be at least 1ms.")
    return seconds


def _optional_duration(value: object, what: str) -> float | None:
    return None if value is None else validate_duration(value, what)


# ----------------------------------------------------------------------------- KV


def kv_set(key: str, value: bytes | str, flags: int = 0, cas: int | None = None) -> bytes:
    """Set ``key`` to ``value``. ``cas``: None = unconditional; 0 = only if the key does not
    exist; N = only if the key's modify_index is N. Applies to ``KVWritten`` or
    ``Rejected(CONFLICT)`` on a CAS mismatch (details: ``current_index``)."""
    return encode(
        KVSet(
            validate_key(key),
            validate_value(value),
            flags if flags.__class__ is int and 0 <= flags <= MAX_UINT64
            else validate_uint(flags, "flags"),
            None if cas is None else validate_uint(cas, "cas index"),
        )
    )


def kv_delete(key: str, cas: int | None = None, recurse: bool = False) -> bytes:
    """Delete ``key``, or with ``recurse`` every key starting with ``key`` (then ``key`` is a
    prefix and may be empty: everything). ``cas``: delete only if the key's modify_index is N
    (an absent key is not a mismatch: nothing to delete); not allowed with ``recurse``.
    Applies to ``KVDeleted(count)`` or ``Rejected(CONFLICT)``."""
    if recurse:
        if cas is not None:
            raise BadRequest("cas cannot be combined with recurse.")
        return encode(KVDelete(validate_prefix(key), None, True))
    return encode(
        KVDelete(validate_key(key), None if cas is None else validate_uint(cas, "cas index"), False)
    )


def txn(ops: object) -> bytes:
    """An all-or-nothing transaction of at most 64 ops, applied in one log entry.

    Each op is a map ``{"verb", "key", "value"?, "flags"?, "index"?}``:

    - ``set``: set key to value (value required).
    - ``cas``: set only if the key's modify_index equals ``index`` (0 = key must not exist).
    - ``delete``: delete the key (absent is fine).
    - ``delete-cas``: delete only if modify_index equals ``index`` (absent is fine).
    - ``get``: read the key as it stands at that point of the transaction; fails if absent.
    - ``check-index``: fail unless the key's modify_index equals ``index`` (0 = must not exist).

    Applies to ``TxnDone(results)`` where results[i] is, per verb: set/cas
    ``{"key","create_index","modify_index"}``, delete/delete-cas ``{"key","deleted": 0|1}``,
    get the entry ``{"key","value","flags","create_index","modify_index"}``, check-index
    ``{"key","modify_index"}``. On any failure: ``Rejected(CONFLICT)`` with details
    ``{"errors": [{"op_index", "message"}, ...]}`` and no change at all.
    """
    if not isinstance(ops, list):
        raise BadRequest("ops must be a list.")
    if not ops:
        raise BadRequest("A transaction needs at least one op.")
    if len(ops) > MAX_TXN_OPS:
        raise BadRequest(f"A transaction holds at most {MAX_TXN_OPS} ops; got {len(ops)}.")
    return encode(Txn([_txn_op(i, op) for i, op in enumerate(ops)]))


def _txn_op(i: int, op: object) -> TxnOp:
    if not isinstance(op, Mapping):
        raise BadRequest(f"ops[{i}] must be an object.")
    unknown = set(op) - {"verb", "key", "value", "value_base64", "flags", "index"}
    if unknown:
        raise BadRequest(f"ops[{i}] has unknown fields: {', '.join(sorted(map(str, unknown)))}.")
    verb = op.get("verb")
    if verb not in TXN_VERBS:
        raise BadRequest(f"ops[{i}].verb must be one of {', '.join(TXN_VERBS)}; got {verb!r}.")
    try:
        key = validate_key(op.get("key"))
        value = None
        flags = 0
        index = None
        if verb in ("set", "cas"):
            if "value" not in op and "value_base64" not in op:
                raise BadRequest(f"A {verb} op needs a value.")
            value = value_from_json(op)
            flags = validate_uint(op.get("flags", 0), "flags")
        elif "value" in op or "value_base64" in op or "flags" in op:
            raise BadRequest(f"A {verb} op takes no value or flags.")
        if verb in ("cas", "delete-cas", "check-index"):
            if op.get("index") is None:
                raise BadRequest(f"A {verb} op needs an index.")
            index = validate_uint(op["index"], "index")
        elif op.get("index") is not None:
            raise BadRequest(f"A {verb} op takes no index.")
    except BadRequest as exc:
        raise BadRequest(f"ops[{i}]: {exc.message}") from None
    except TooLarge as exc:
        raise TooLarge(f"ops[{i}]: {exc.message}") from None
    return TxnOp(verb, key, value, flags, index)


# ----------------------------------------------------------------------------- services


_SERVICE_FIELDS = {"id", "name", "address", "port", "tags", "meta", "checks", "ttl"}
_CHECK_FIELDS = {"id", "name", "http", "tcp", "ttl", "interval", "timeout",
                 "deregister_critical_after"}


def service_register(instance: Mapping[str, Any], ttl: float | str | None = None) -> bytes:
    """Register (upsert by id) a service instance with its checks.

    ``instance``: ``{"name", "id"?, "address"?, "port"?, "tags"?, "meta"?, "checks"?,
    "ttl"?}``; ``ttl`` (argument, or the instance's field) is the heartbeat interval: a Go-style
    duration or seconds. Check ids default to ``service:<id>`` for a single check and
    ``service:<id>:<n>`` (n = 1, 2, ... by position) when there are several.
    Applies to ``ServiceWritten`` or ``Rejected(CONFLICT)`` when a check id belongs to another
    service.
    """
    return encode(ServiceRegister(normalize_service(instance, ttl)))


def normalize_service(instance: object, ttl: object = None) -> ServiceDef:
    """Validate an instance and return its normalised form (also used by import)."""
    if not isinstance(instance, Mapping):
        raise BadRequest("A service instance must be an object.")
    unknown = set(instance) - _SERVICE_FIELDS
    if unknown:
        raise BadRequest(
            f"Unknown service fields: {', '.join(sorted(map(str, unknown)))} "
            f"(expected {', '.join(sorted(_SERVICE_FIELDS))})."
        )
    if "name" not in instance:
        raise BadRequest("A service instance needs a name.")
    name = validate_id(instance["name"], "service name")
    sid = validate_id(instance.get("id") or name, "service id")
    address = _text(instance.get("address") or "", "address", MAX_ADDRESS_LEN)
    port = instance.get("port", 0)
    if port is None:
        port = 0
    if type(port) is not int or not 0 <= port <= 65535:
        raise BadRequest("The port must be an integer between 0 and 65535.")
    tags = _tags(instance.get("tags"))
    meta = _meta(instance.get("meta"))
    if ttl is None:
        ttl = instance.get("ttl")
    checks_raw = instance.get("checks")
    if checks_raw is None:
        checks_raw = []
    if not isinstance(checks_raw, list):
        raise BadRequest("checks must be a list.")
    if len(checks_raw) > MAX_CHECKS:
        raise BadRequest(f"A service has at most {MAX_CHECKS} checks.")
    checks = [_check(sid, name, i, len(checks_raw), c) for i, c in enumerate(checks_raw)]
    seen: set[str] = set()
    for c in checks:
        if c.id in seen:
            raise BadRequest(f"Duplicate check id {c.id!r} in service {sid!r}.")
        seen.add(c.id)
    return ServiceDef(
        sid, name, address, port, tags, meta, _optional_duration(ttl, "service ttl"), checks
    )


def _tags(raw: object) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("tags must be a list of strings.")
    if len(raw) > MAX_TAGS:
        raise BadRequest(f"A service has at most {MAX_TAGS} tags.")
    return [_text(t, "tag", MAX_NAME_LEN) for t in raw]


def _meta(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BadRequest("meta must be an object of string values.")
    if len(raw) > MAX_META:
        raise BadRequest(f"A service has at most {MAX_META} meta entries.")
    out: dict[str, str] = {}
    for k in sorted(raw):
        if type(k) is not str or not _META_KEY.fullmatch(k):
            raise BadRequest(
                f"Meta key {k!r} must be 1-{MAX_META_KEY_LEN} letters, digits, '_', '.' or '-'."
            )
        out[k] = _text(raw[k], f"meta value of {k!r}", MAX_META_VALUE_LEN)
    return out


def _check(sid: str, sname: str, pos: int, count: int, raw: object) -> CheckDef:
    where = f"checks[{pos}]"
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{where} must be an object.")
    unknown = set(raw) - _CHECK_FIELDS
    if unknown:
        raise BadRequest(f"{where} has unknown fields: {', '.join(sorted(map(str, unknown)))}.")
    kinds = [k for k in ("http", "tcp", "ttl") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise BadRequest(f"{where} needs exactly one of http, tcp or ttl.")
    kind = kinds[0]
    default_id = f"service:{sid}" if count == 1 else f"service:{sid}:{pos + 1}"
    cid = validate_id(raw.get("id") or default_id, f"{where}.id")
    cname = _text(raw.get("name") or f"Service '{sname}' check", f"{where}.name", MAX_NAME_LEN)
    target = ""
    interval = timeout = ttl = None
    if kind == "ttl":
        ttl = validate_duration(raw["ttl"], f"{where}.ttl")
    else:
        target = _http_target(raw["http"], where) if kind == "http" else _tcp_target(
            raw["tcp"], where)
        interval = validate_duration(raw.get("interval") or DEFAULT_CHECK_INTERVAL,
                                     f"{where}.interval")
        timeout = validate_duration(raw.get("timeout") or DEFAULT_CHECK_TIMEOUT,
                                    f"{where}.timeout")
    dca = _optional_duration(raw.get("deregister_critical_after"),
                             f"{where}.deregister_critical_after")
    return CheckDef(cid, cname, kind, target, interval, timeout, ttl, dca)


def _http_target(raw: object, where: str) -> str:
    url = _text(raw, f"{where}.http", MAX_URL_LEN)
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise BadRequest(f"{where}.http must be an http:// or https:// URL; got {url!r}.")
    if any(ch.isspace() for ch in url):
        raise BadRequest(f"{where}.http must not contain whitespace.")
    return url


def _tcp_target(raw: object, where: str) -> str:
    addr = _text(raw, f"{where}.tcp", MAX_ADDRESS_LEN)
    try:
        parse_host_port(addr)
        if any(ch.isspace() for ch in addr):
            raise ValueError(addr)
    except ValueError:
        raise BadRequest(
            f"{where}.tcp must be host:port with a port in 1..65535; got {addr!r}."
        ) from None
    return addr


def service_deregister(service_id: str) -> bytes:
    """Remove an instance and its checks. Applies to ``ServiceWritten`` or
    ``Rejected(NOT_FOUND)``."""
    return encode(ServiceDeregister(validate_id(service_id, "service id")))


def service_heartbeat(service_id: str) -> bytes:
    """Record a heartbeat (resets the leader's service-TTL timer) and pass the service's TTL
    checks. Applies to ``ServiceWritten`` or ``Rejected(NOT_FOUND)``."""
    return encode(ServiceHeartbeat(validate_id(service_id, "service id")))


def check_update(
    check_id: str, status: str, output: str | None = "", *, from_runner: bool = False,
    seen: int | None = None,
) -> bytes:
    """Report a check's status. From the API (default) only TTL checks may be updated: the
    handler calls ``StateMachine.validate_check_update`` first (NotFound, BadRequest), and
    apply refuses again (``Rejected(INVALID)``) if the check changed kind in between. With
    ``from_runner`` (the check runner) any kind is accepted; with ``seen`` too (a probe result,
    ``check_probe``) it applies only if the check's ``update_index`` is still ``seen``, else
    ``Ignored``. Applies to ``CheckWritten``."""
    cid = validate_id(check_id, "check id")
    status, text = validate_status(status), validate_output(output)
    if from_runner and seen is not None:
        return encode(CheckProbe(cid, status, text, int(seen)))
    return encode((CheckSet if from_runner else CheckTTL)(cid, status, text))


def service_expire(service_id: str, heartbeat_index: int) -> bytes:
    """Leader: the service's heartbeat TTL ran out. Deregisters it only if its
    ``heartbeat_index`` is still ``heartbeat_index`` (else ``Ignored``)."""
    return encode(ServiceExpire(service_id, int(heartbeat_index)))


def check_expire(check_id: str, update_index: int) -> bytes:
    """Leader: a TTL check was not updated within its TTL. Sets it critical ("TTL expired")
    only if its ``update_index`` is still ``update_index`` (else ``Ignored``)."""
    return encode(CheckExpire(check_id, int(update_index)))


def check_reap(check_id: str, status_index: int) -> bytes:
    """Leader: a check stayed critical for its ``deregister_critical_after``. Deregisters the
    check's service only if the check is still critical with ``status_index`` unchanged."""
    return encode(CheckReap(check_id, int(status_index)))


# ----------------------------------------------------------------------------- import


def import_document(doc: object) -> list[bytes]:
    """Validate a whole export document (``{"version": 1, "index"?, "kv": [...],
    "services": [...]}``) with the builders' rules, then split it into import commands of at
    most ``IMPORT_CHUNK_ITEMS`` items / about ``IMPORT_CHUNK_BYTES`` each. Nothing is returned
    unless everything is valid. Import upserts: existing keys are overwritten, instances
    re-registered by id; nothing else is removed."""
    if not isinstance(doc, Mapping):
        raise BadRequest("The import document must be an object.")
    unknown = set(doc) - {"version", "index", "kv", "services"}
    if unknown:
        raise BadRequest(f"Unknown import fields: {', '.join(sorted(map(str, unknown)))}.")
    version = doc.get("version", 1)
    if version != 1 or type(version) is not int:
        raise BadRequest(f"Unsupported export version {version!r}; this node reads version 1.")
    kv = _import_kv(doc.get("kv"))
    services = _import_services(doc.get("services"))
    return [encode(Import(k, s)) for k, s in _chunks(kv, services)]


def import_chunk(doc_part: object) -> bytes:
    """One import command for a part of a document (``{"kv": [...], "services": [...]}``),
    validated like ``import_document``; applied atomically to ``Imported`` or
    ``Rejected(CONFLICT)`` (a check id owned by another service)."""
    if not isinstance(doc_part, Mapping):
        raise BadRequest("An import chunk must be an object.")
    return encode(
        Import(_import_kv(doc_part.get("kv")), _import_services(doc_part.get("services")))
    )


def _import_kv(raw: object) -> list[KVItem]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("kv must be a list.")
    out: list[KVItem] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise BadRequest(f"kv[{i}] must be an object.")
        # Indices (e.g. a listing fed back in) are not portable: ignored, not refused.
        unknown = set(item) - {"key", "value", "value_base64", "flags", "create_index",
                               "modify_index"}
        if unknown:
            raise BadRequest(f"kv[{i}] has unknown fields: {', '.join(sorted(map(str, unknown)))}.")
        try:
            key = validate_key(item.get("key"))
            if key in seen:
                raise BadRequest(f"duplicate key {key!r}.")
            seen.add(key)
            out.append(KVItem(key, value_from_json(item),
                              validate_uint(item.get("flags", 0), "flags")))
        except BadRequest as exc:
            raise BadRequest(f"kv[{i}]: {exc.message}") from None
        except TooLarge as exc:
            raise TooLarge(f"kv[{i}]: {exc.message}") from None
    return out


def _import_services(raw: object) -> list[ServiceDef]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("services must be a list.")
    out: list[ServiceDef] = []
    ids: set[str] = set()
    check_owner: dict[str, str] = {}
    for i, item in enumerate(raw):
        try:
            svc = normalize_service(item)
        except BadRequest as exc:
            raise BadRequest(f"services[{i}]: {exc.message}") from None
        if svc.id in ids:
            raise BadRequest(f"services[{i}]: duplicate service id {svc.id!r}.")
        ids.add(svc.id)
        for c in svc.checks:
            owner = check_owner.setdefault(c.id, svc.id)
            if owner != svc.id:
                raise BadRequest(
                    f"services[{i}]: check id {c.id!r} is also used by service {owner!r}."
                )
        out.append(svc)
    return out


def _chunks(
    kv: list[KVItem], services: list[ServiceDef]
) -> Iterable[tuple[list[KVItem], list[ServiceDef]]]:
    """Bounded parts; an empty document still yields one (empty) chunk so the import commits
    something and reports counts."""
    k_part: list[KVItem] = []
    s_part: list[ServiceDef] = []
    size = 0
    for item in kv:
        cost = len(item.key) + len(item.value) + 16
        if k_part and (len(k_part) >= IMPORT_CHUNK_ITEMS or size + cost > IMPORT_CHUNK_BYTES):
            yield k_part, []
            k_part, size = [], 0
        k_part.append(item)
        size += cost
    for svc in services:
        if len(k_part) + len(s_part) >= IMPORT_CHUNK_ITEMS or size > IMPORT_CHUNK_BYTES:
            yield k_part, s_part
            k_part, s_part, size = [], [], 0
        s_part.append(svc)
        size += 1024  # an instance with its checks stays well under this
    yield k_part, s_part


# ----------------------------------------------------------------------------- ACL

MAX_DESCRIPTION_LEN = 256
MAX_TOKEN_POLICIES = 64
_POLICY_NAME = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_HASH = re.compile(r"[0-9a-f]{64}")


def validate_policy_name(name: object) -> str:
    if type(name) is not str or not _POLICY_NAME.fullmatch(name):
        raise BadRequest(
            f"A policy name is 1 to 128 letters, digits, '-' or '_'; got {name!r}."
        )
    return name


def validate_description(value: object) -> str:
    return "" if value is None else _text(value, "description", MAX_DESCRIPTION_LEN)


def validate_rules(raw: object) -> dict[str, Any]:
    """Rules in their JSON form, normalised (``konsul.acl.rules``)."""
    try:
        return Rules.parse(raw).to_json()
    except RuleError as exc:
        raise BadRequest(f"The rules are invalid: {exc}.") from None


def acl_policy_set(policy_id: str, name: object, description: object, rules: object) -> bytes:
    return encode(AclPolicySet(
        validate_id(policy_id, "policy id"), validate_policy_name(name),
        validate_description(description), validate_rules(rules),
    ))


def acl_policy_delete(policy_id: str) -> bytes:
    return encode(AclPolicyDelete(validate_id(policy_id, "policy id")))


def _hash(secret_hash: str, *, optional: bool = False) -> str:
    if optional and secret_hash == "":
        return ""
    if not _HASH.fullmatch(secret_hash):
        raise ValueError("a token secret travels as its SHA-256 in hex")  # a bug, not input
    return secret_hash


def acl_token_set(
    accessor_id: str, secret_hash: str, description: object, policy_ids: Iterable[str]
) -> bytes:
    """``secret_hash`` ``""`` keeps an existing token's secret; ``policy_ids`` are resolved
    (names looked up) by the caller."""
    ids = [validate_id(p, "policy id") for p in policy_ids]
    if len(ids) > MAX_TOKEN_POLICIES:
        raise BadRequest(f"A token holds at most {MAX_TOKEN_POLICIES} policies.")
    return encode(AclTokenSet(
        validate_id(accessor_id, "accessor id"), _hash(secret_hash, optional=True),
        validate_description(description), ids,
    ))


def acl_token_delete(accessor_id: str) -> bytes:
    return encode(AclTokenDelete(validate_id(accessor_id, "accessor id")))


def acl_bootstrap(accessor_id: str, secret_hash: str, description: str, initial: bool) -> bytes:
    return encode(AclBootstrap(
        validate_id(accessor_id, "accessor id"), _hash(secret_hash), description, initial
    ))


# ----------------------------------------------------------------------------- online restore


def restore_begin(restore_id: str, size: int, sha256: bytes, index: int, term: int) -> bytes:
    return encode(RestoreBegin(restore_id, size, sha256, index, term))


def restore_chunk(restore_id: str, offset: int, data: bytes) -> bytes:
    return encode(RestoreChunk(restore_id, offset, data))


def restore_commit(restore_id: str) -> bytes:
    return encode(RestoreCommit(restore_id))


def restore_abort(restore_id: str, reason: str) -> bytes:
    return encode(RestoreAbort(restore_id, reason))
