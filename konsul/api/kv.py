"""``/kv/<key>`` (get, put, delete) and ``/kv/?prefix=`` (listing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from konsul.api.acl import authorizer
from konsul.api.encoded import shared_read_response
from konsul.api.errors import index_error
from konsul.api.http import (
    flag,
    index_headers,
    json_response,
    node_of,
    query_uint,
    read_json_object,
    read_point,
)
from konsul.api.writes import write
from konsul.errors import BadRequest, NotFound
from konsul.store import commands
from konsul.watch import Key, Prefix

if TYPE_CHECKING:
    from konsul.node import Node
    from konsul.store import StateMachine


def _key(request: web.Request) -> str:
    return commands.validate_key(request.match_info["key"])


def _key_index(store: StateMachine, key: str) -> int:
    """A key's modify index, or the table's when it is absent (so a delete wakes a watcher)."""
    entry = store.kv_get(key)
    return entry.modify_index if entry is not None else store.kv_index


async def get_key(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    node = node_of(request)
    # Always through node.store: a snapshot restore replaces the tables while we wait.
    await read_point(request, Key(key), lambda: _key_index(node.store, key))
    return key_response(node, key)


def key_response(node: Node, key: str) -> web.Response:
    """The answer to a read of one key, 404 included, at the state the node holds now."""
    store = node.store
    entry = store.kv_get(key)
    index = _key_index(store, key)
    if entry is None:
        return index_error(node, NotFound(f"Key {key!r} not found."), index)
    return json_response(entry.to_json(), headers=index_headers(node, index))


async def list_keys(request: web.Request) -> web.StreamResponse:
    prefix = commands.validate_prefix(request.query.get("prefix", ""))
    separator = request.query.get("separator") or None
    names_only = flag(request, "keys")
    node = node_of(request)
    # Always through node.store: a snapshot restore replaces the tables while we wait.
    await read_point(request, Prefix(prefix), lambda: node.store.kv_index)
    store = node.store
    readable = authorizer(request).key_reader(prefix)  # the token sees only what it may read

    def listing() -> list[Any]:
        if names_only:
            return [k for k in store.kv_keys(prefix, separator) if readable(k)]
        return [e.to_json() for e in store.kv_list(prefix, separator) if readable(e.key)]

    return shared_read_response(request, store.kv_index, listing)


def _cas(from_query: int | None, body: dict[str, Any]) -> int | None:
    from_body = body.get("cas")
    if from_body is not None:
        from_body = commands.validate_uint(from_body, "cas")
        if from_query is not None and from_query != from_body:
            raise BadRequest("cas is given in both the query and the body with different values")
        return int(from_body)
    return from_query


_PUT_FIELDS = {"value", "value_base64", "flags", "cas"}


async def put_key(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    body = await read_json_object(request)
    return await write(request, set_command(key, body, query_uint(request, "cas")))


def set_command(key: str, body: dict[str, Any], cas_from_query: int | None) -> bytes:
    """The command for ``PUT /kv/<key>`` with this body (400 on unknown or bad fields)."""
    unknown = set(body) - _PUT_FIELDS
    if unknown:
        fields = ", ".join(sorted(unknown))
        raise BadRequest(
            f"Unknown fields: {fields} (expected value or value_base64, flags, cas)."
        )
    if "value" not in body and "value_base64" not in body:
        raise BadRequest('The body needs a "value" (a string).')
    flags = commands.validate_uint(body.get("flags", 0), "flags")
    return commands.kv_set(key, commands.value_from_json(body), flags, _cas(cas_from_query, body))


async def delete_key(request: web.Request) -> web.StreamResponse:
    recurse = flag(request, "recurse")
    raw = request.match_info.get("key", "")
    key = commands.validate_prefix(raw) if recurse else _key(request)
    command = commands.kv_delete(key, query_uint(request, "cas"), recurse)
    return await write(request, command)


async def delete_all(request: web.Request) -> web.StreamResponse:
    """``DELETE /kv/?recurse``: everything (refused without ``recurse``, which is no key)."""
    if not flag(request, "recurse"):
        raise BadRequest("A key is required (or ?recurse to delete every key under the prefix).")
    prefix = commands.validate_prefix(request.query.get("prefix", ""))
    return await write(request, commands.kv_delete(prefix, None, True))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/kv/", list_keys)
    app.router.add_delete("/kv/", delete_all)
    app.router.add_get("/kv/{key:.+}", get_key)
    app.router.add_put("/kv/{key:.+}", put_key)
    app.router.add_post("/kv/{key:.+}", put_key)
    app.router.add_delete("/kv/{key:.+}", delete_key)
