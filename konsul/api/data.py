"""``GET /export`` and ``POST /import``: every key and service instance as one JSON document."""

from __future__ import annotations

from aiohttp import web

from konsul.api.acl import authorizer
from konsul.api.errors import error_response
from konsul.api.http import (
    IMPORT_BODY_LIMIT,
    json_response,
    node_of,
    read_json,
    read_point,
    read_response,
)
from konsul.api.writes import propose, result_response
from konsul.store import commands
from konsul.store.types import Imported, Rejected
from konsul.watch import Table


async def export(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    await read_point(request, Table("applied"), lambda: node.store.last_applied)
    document = node.store.export()
    auth = authorizer(request)  # an export holds only what the token may read
    readable = auth.key_reader("")
    document["kv"] = [e for e in document["kv"] if readable(e["key"])]
    document["services"] = [
        s for s in document["services"] if auth.allows("service", s["name"], "read")
    ]
    return read_response(request, document, node.store.last_applied)


async def import_(request: web.Request) -> web.StreamResponse:
    """Validated as a whole first (nothing is written unless all of it is valid), then applied
    one bounded chunk per log entry. Import upserts, so a caller that saw a failure part-way
    (leadership lost, a 409) can simply send the same document again."""
    chunks = commands.import_document(await read_json(request, IMPORT_BODY_LIMIT))
    kv = services = 0
    for done, chunk in enumerate(chunks):
        result = await propose(request, chunk)
        if not isinstance(result, Imported):
            response = result_response(result)
            if done and isinstance(result, Rejected):
                # Say how far it got: the earlier chunks are committed (re-sending is safe).
                progress = {"chunks_applied": done, "chunks": len(chunks)}
                response = error_response(result.to_error(), extra=progress)
            return response
        kv += result.kv
        services += result.services
    return json_response({"kv": kv, "services": services, "chunks": len(chunks)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/export", export)
    app.router.add_post("/import", import_)
