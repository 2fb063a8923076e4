"""``POST /txn``: up to 64 KV ops applied all-or-nothing in one log entry."""

from __future__ import annotations

from aiohttp import web

from konsul.api.acl import require
from konsul.api.http import TXN_BODY_LIMIT, read_json_object
from konsul.api.writes import write
from konsul.errors import BadRequest
from konsul.store import commands


async def txn(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request, TXN_BODY_LIMIT)
    unknown = set(body) - {"ops"}
    if unknown:
        raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))} (expected ops).")
    if "ops" not in body:
        raise BadRequest('The body needs "ops": a list of operations.')
    command = commands.txn(body["ops"])  # validated: every op is a well-formed object now
    for op in body["ops"]:
        require(request, "key", op["key"], "read" if op["verb"] in _READS else "write")
    return await write(request, command)


_READS = ("get", "check-index")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/txn", txn)
