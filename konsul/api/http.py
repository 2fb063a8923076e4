"""What every handler shares: JSON in and out, query parsing, body limits, read points and headers.

Bodies are read by ``read_body`` with a per-route limit (rather than aiohttp's single
``client_max_size``) so an oversized value gets the documented JSON 413 while ``/import`` may
still carry a whole data set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from konsul.durations import parse_duration
from konsul.errors import BadRequest, TooLarge

if TYPE_CHECKING:
    from konsul.node import Node
    from konsul.watch import Topic

NODE: web.AppKey[Node] = web.AppKey("konsul.node", "Node")  # type: ignore[arg-type]
# Set when the app starts shutting down, when its parked blocking reads are released: they answer
# at once instead of holding the shutdown (aiohttp waits up to 60 s for handlers).
STOPPING = web.AppKey("konsul.stopping", asyncio.Event)

KIB = 1024
MIB = 1024 * KIB
# A 512 KiB value may grow when JSON-escaped (a quote or backslash doubles, a control character
# becomes six bytes), so the body limit sits well above the value limit the store enforces.
DEFAULT_BODY_LIMIT = 4 * MIB
TXN_BODY_LIMIT = 40 * MIB  # 64 ops of up to 512 KiB each, escaped
IMPORT_BODY_LIMIT = 256 * MIB
# aiohttp's own limit must never fire first: its 413 would bypass our per-route limits.
APP_MAX_SIZE = IMPORT_BODY_LIMIT + MIB

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0

_BODY = web.RequestKey("konsul.body", bytes)
_FALSE = ("false", "0", "no", "off")


def node_of(request: web.Request) -> Node:
    return request.app[NODE]


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


async def read_body(request: web.Request, limit: int = DEFAULT_BODY_LIMIT) -> bytes:
    """The raw body, at most ``limit`` bytes (413 beyond); cached so a proxy can resend it."""
    cached: bytes | None = request.get(_BODY)
    if cached is not None:
        return cached
    length = request.content_length
    if length is not None:
        if length > limit:
            raise TooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")
        try:
            body = await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise BadRequest(f"request body ended before its {length} bytes") from None
    else:  # chunked: count as it comes
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    request[_BODY] = body
    return body


async def read_json(request: web.Request, limit: int = DEFAULT_BODY_LIMIT) -> Any:
    body = await read_body(request, limit)
    if not body.strip():
        raise BadRequest("request body is empty: expected a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


async def read_json_object(
    request: web.Request, limit: int = DEFAULT_BODY_LIMIT, *, optional: bool = False
) -> dict[str, Any]:
    """A JSON object body; ``optional`` lets an empty body stand for ``{}``."""
    if optional and not (await read_body(request, limit)).strip():
        return {}
    data = await read_json(request, limit)
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {_json_type(data)}")
    return data


_JSON_TYPES: dict[type, str] = {
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _json_type(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def flag(request: web.Request, name: str) -> bool:
    """A presence flag (``?recurse``, ``?consistent``); ``=false`` / ``=0`` turn it off."""
    if name not in request.query:
        return False
    return request.query[name].strip().lower() not in _FALSE


def parse_uint(text: str, name: str) -> int:
    stripped = text.strip()
    if not stripped.isdecimal() or not stripped.isascii():
        raise BadRequest(f"{name} must be a non-negative integer, got {text!r}")
    value = int(stripped)
    if value >= 2**64:
        raise BadRequest(f"{name} must fit in 64 bits, got {text!r}")
    return value


def query_uint(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return None if raw is None else parse_uint(raw, name)


def query_str(request: web.Request, name: str, default: str = "") -> str:
    return request.query.get(name, default)


async def read_point(request: web.Request, topic: Topic, index_fn: Callable[[], int]) -> None:
    """Honour the read flags: ``?consistent`` (ReadIndex) and ``?index=N&wait=D`` (blocking:
    parked on ``topic``, what the read shows, until ``index_fn()`` passes N)."""
    node = node_of(request)
    consistent = flag(request, "consistent")
    if consistent and flag(request, "stale"):
        raise BadRequest("?stale and ?consistent cannot be combined")
    if consistent:
        await node.read_barrier()
    after = query_uint(request, "index")
    if after is None:
        return
    wait = DEFAULT_WAIT
    raw_wait = request.query.get("wait")
    if raw_wait is not None:
        try:
            wait = parse_duration(raw_wait)
        except ValueError as exc:
            raise BadRequest(f"wait: {exc}") from None
    # Consul's rule: a wait beyond the maximum is clamped, not refused.
    wait = min(wait, MAX_WAIT)
    if wait > 0 and not request.config_dict[STOPPING].is_set():
        # (once the app stops, its shutdown hook releases every parked reader: see create_app)
        await node.watch(topic, index_fn, after, wait)


def read_headers(request: web.Request, index: int) -> dict[str, str]:
    return index_headers(node_of(request), index)


def index_headers(node: Node, index: int) -> dict[str, str]:
    """The headers of every read: the index it reflects and what the node knows of its leader."""
    return {
        "X-Konsul-Index": str(index),
        "X-Konsul-Known-Leader": "true" if node.leader() is not None else "false",
        "X-Konsul-Last-Contact": str(node.last_contact_ms()),
    }


def read_response(
    request: web.Request, data: Any, index: int, status: int = 200
) -> web.Response:
    return json_response(data, status=status, headers=read_headers(request, index))
