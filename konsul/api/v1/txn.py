"""``PUT /v1/txn``: Consul's KV transactions on Konsul's all-or-nothing ``txn`` command.

The request is Consul's list of ``{"KV": {"Verb", "Key", "Value" (base64), "Flags", "Index"}}``
(field names in any case). Verbs map one to one onto Konsul's, ``check-not-exists`` being a
``check-index`` at 0; the tree verbs and the session verbs have no Konsul counterpart and are
refused, as are ``Node``, ``Service`` and ``Check`` operations. The answer is Consul's
``{"Results": [{"KV": entry}], "Errors": null}`` (entries of writes without their value, deletes
without an entry), or ``409 {"Results": null, "Errors": [{"OpIndex", "What"}]}`` with nothing
changed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from konsul.api.acl import require
from konsul.api.http import TXN_BODY_LIMIT, node_of, read_body
from konsul.api.v1.commit import commit
from konsul.api.v1.kv import entry_json
from konsul.errors import BadRequest, Conflict, TooLarge
from konsul.store import KVEntry, Rejected, TxnDone, commands

_VERBS = {
    "set": "set",
    "cas": "cas",
    "get": "get",
    "delete": "delete",
    "delete-cas": "delete-cas",
    "check-index": "check-index",
    "check-not-exists": "check-index",
}
_FIELDS = {"verb", "key", "value", "flags", "index", "session", "namespace", "partition"}


def _op(i: int, raw: object) -> dict[str, Any]:
    """One Consul op as a Konsul txn op (``commands.txn`` validates the rest)."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise BadRequest(f"Operation {i} must be an object with exactly one of KV, Node, "
                         f"Service or Check")
    (kind, body), = raw.items()
    if str(kind).lower() != "kv":
        raise BadRequest(f"Operation {i}: {kind} operations are not supported by Konsul")
    if not isinstance(body, Mapping):
        raise BadRequest(f"Operation {i}: KV must be an object")
    fields = {str(k).lower(): v for k, v in body.items()}
    unknown = set(fields) - _FIELDS
    if unknown:
        raise BadRequest(f"Operation {i}: unknown fields {', '.join(sorted(unknown))}")
    verb = fields.get("verb")
    if verb not in _VERBS:
        raise BadRequest(f"Operation {i}: verb {verb!r} is not supported by Konsul")
    if fields.get("session"):
        raise BadRequest(f"Operation {i}: sessions are not supported by Konsul")
    op: dict[str, Any] = {"verb": _VERBS[verb], "key": fields.get("key")}
    if verb in ("set", "cas"):
        op["value"] = _decode(i, fields.get("value"))
        op["flags"] = fields.get("flags") or 0
    if verb in ("cas", "delete-cas", "check-index"):
        op["index"] = fields.get("index") or 0
    if verb == "check-not-exists":
        op["index"] = 0
    return op


def _decode(i: int, value: object) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise BadRequest(f"Operation {i}: Value must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise BadRequest(f"Operation {i}: Value is not valid base64") from None


async def txn(request: web.Request) -> web.StreamResponse:
    try:
        ops = orjson.loads(await read_body(request, TXN_BODY_LIMIT))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Failed to parse body: {exc}") from None
    if not isinstance(ops, list):
        raise BadRequest("Failed to parse body: expected a list of operations")
    if len(ops) > commands.MAX_TXN_OPS:
        raise TooLarge(
            f"Transaction contains too many operations ({len(ops)} > {commands.MAX_TXN_OPS})"
        )
    konsul_ops = [_op(i, raw) for i, raw in enumerate(ops)]
    command = commands.txn(konsul_ops)  # validated: keys are strings now
    for op in konsul_ops:
        require(request, "key", op["key"], "read" if op["verb"] in _READS else "write")
    result = await commit(request, command)
    if isinstance(result, Rejected):
        refusal = result.to_error()
        if not isinstance(refusal, Conflict):
            raise refusal
        errors = [{"OpIndex": e["op_index"], "What": e["message"]}
                  for e in result.details.get("errors", [])]
        return _json({"Results": None, "Errors": errors}, 409)
    assert isinstance(result, TxnDone)
    results = [_result(request, op, r) for op, r in zip(konsul_ops, result.results, strict=True)]
    return _json({"Results": [r for r in results if r is not None], "Errors": None}, 200)


def _result(request: web.Request, op: dict[str, Any], result: dict[str, Any]
            ) -> dict[str, Any] | None:
    """Consul's result entry for one op: writes and checks show the entry without its value,
    a get shows it whole, deletes and existence checks show nothing."""
    verb = op["verb"]
    if verb in ("delete", "delete-cas") or (verb == "check-index" and op["index"] == 0):
        return None
    if verb == "get":  # the native result: the entry as JSON, its value as text or base64
        value = commands.value_from_json(result)
        entry = KVEntry(result["key"], value, result["flags"], result["create_index"],
                        result["modify_index"])
        return {"KV": entry_json(entry)}
    if verb == "check-index":  # Konsul reports the modify index only; the replica has the rest
        current = node_of(request).store.kv_get(result["key"])
        if current is not None and current.modify_index == result["modify_index"]:
            return {"KV": entry_json(replace(current, value=b""))}
        return {"KV": entry_json(KVEntry(result["key"], b"", 0, 0, result["modify_index"]))}
    entry = KVEntry(result["key"], b"", op["flags"], result["create_index"], result["modify_index"])
    return {"KV": entry_json(entry)}


def _json(data: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


_READS = ("get", "check-index")


def add_routes(app: web.Application) -> None:
    app.router.add_put("/txn", txn)
