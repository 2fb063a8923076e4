"""``/v1/kv/<key>``: Consul's KV endpoint on Konsul's KV table.

Entries are Consul's ``{"Key", "Value" (base64 or null), "Flags", "CreateIndex", "ModifyIndex",
"LockIndex"}``, always in a list; nothing matching is an empty 404 (a key listing of the root is
``[]``). Writes answer ``true``/``false``: a CAS that does not match is ``200 false``, as in
Consul. A key's leading slashes are dropped. Keys follow Konsul's rules otherwise (``docs/api.md``).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from aiohttp import web

from konsul.api.acl import authorizer
from konsul.api.http import node_of, read_body
from konsul.api.v1.commit import commit
from konsul.api.v1.query import answer, meta_headers, not_found, read_point, shared_answer
from konsul.errors import BadRequest, Conflict, TooLarge
from konsul.store import KVDeleted, KVEntry, KVWritten, Rejected, commands
from konsul.watch import Key, Prefix

if TYPE_CHECKING:
    from konsul.store import StateMachine


def _key(request: web.Request) -> str:
    return request.match_info["key"].lstrip("/")


def _uint(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return commands.validate_uint(raw, name)
    except BadRequest:
        raise BadRequest(f"Invalid {name} value {raw!r}: expected an unsigned integer") from None


def _conflicting(request: web.Request, *names: str) -> None:
    if sum(name in request.query for name in names) > 1:
        raise BadRequest(f"Conflicting flags: {', '.join(names)} cannot be combined")


def entry_json(entry: KVEntry) -> dict[str, Any]:
    value = entry.value
    return {
        "LockIndex": 0,
        "Key": entry.key,
        "Flags": entry.flags,
        "Value": base64.b64encode(value).decode() if value else None,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    }


def _key_index(store: StateMachine, key: str) -> int:
    entry = store.kv_get(key)
    return entry.modify_index if entry is not None else store.kv_index


async def get(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    query = request.query
    if "keys" in query:
        return await _list_keys(request, commands.validate_prefix(key))
    if "recurse" in query:
        return await _list_entries(request, commands.validate_prefix(key))
    if not key:
        raise BadRequest("Missing key name")
    commands.validate_key(key)
    node = node_of(request)
    read = await read_point(request, Key(key), lambda: _key_index(node.store, key))
    store = node.store
    entry = store.kv_get(key)
    index = _key_index(store, key)
    if entry is None:
        return not_found(request, read, index)
    if "raw" in query:
        # Consul's guard against a stored value being taken for a page by a browser.
        headers = meta_headers(request, read, index)
        headers.update({"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
        return web.Response(body=entry.value, content_type="text/plain", headers=headers)
    return answer(request, read, index, [entry_json(entry)])


async def _list_entries(request: web.Request, prefix: str) -> web.StreamResponse:
    node = node_of(request)
    read = await read_point(request, Prefix(prefix), lambda: node.store.kv_index)
    store = node.store
    readable = authorizer(request).key_reader(prefix)
    entries = [e for e in store.kv_list(prefix) if readable(e.key)]
    if not entries:
        return not_found(request, read, store.kv_index)
    return shared_answer(request, read, store.kv_index, lambda: [entry_json(e) for e in entries])


async def _list_keys(request: web.Request, prefix: str) -> web.StreamResponse:
    # Consul still honours its historic misspelling of the parameter.
    separator = request.query.get("separator", request.query.get("seperator")) or None
    node = node_of(request)
    read = await read_point(request, Prefix(prefix), lambda: node.store.kv_index)
    store = node.store
    readable = authorizer(request).key_reader(prefix)
    names = [k for k in store.kv_keys(prefix, separator) if readable(k)]
    if not names and prefix:
        return not_found(request, read, store.kv_index)
    return shared_answer(request, read, store.kv_index, lambda: names)


async def put(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    if not key:
        raise BadRequest("Missing key name")
    if "acquire" in request.query or "release" in request.query:
        raise BadRequest("Sessions are not supported by Konsul: ?acquire and ?release are refused")
    length = request.content_length
    if length is not None and length > commands.MAX_VALUE_BYTES:
        raise TooLarge(
            f"Request body({length} bytes) too large, max size: {commands.MAX_VALUE_BYTES} bytes."
        )
    value = await read_body(request, commands.MAX_VALUE_BYTES)
    flags = _uint(request, "flags") or 0
    cas = _uint(request, "cas")
    result = await commit(request, commands.kv_set(key, value, flags, cas))
    return _boolean(result, KVWritten)


async def delete(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    _conflicting(request, "recurse", "cas")
    recurse = "recurse" in request.query
    if not key and not recurse:
        raise BadRequest("Missing key name")
    command = commands.kv_delete(key, _uint(request, "cas"), recurse)
    return _boolean(await commit(request, command), KVDeleted)


def _boolean(result: object, done: type) -> web.Response:
    """``true`` when the write took effect, ``false`` for a CAS miss; any other refusal is the
    error it is."""
    if isinstance(result, done):
        return _json_bool(True)
    if isinstance(result, Rejected):
        refusal = result.to_error()
        if isinstance(refusal, Conflict):
            return _json_bool(False)
        raise refusal
    return _json_bool(True)


def _json_bool(value: bool) -> web.Response:
    return web.Response(text="true" if value else "false", content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/kv/{key:.*}", get)
    app.router.add_put("/kv/{key:.*}", put)
    app.router.add_delete("/kv/{key:.*}", delete)
