"""A write at the edge: propose the command, answer with its apply result or its refusal."""

from __future__ import annotations

from aiohttp import web

from konsul.api.errors import error_response
from konsul.api.http import json_response, node_of
from konsul.store.types import Rejected


def result_response(result: object) -> web.Response:
    """The answer to a write: the state machine's apply result, or its refusal."""
    if isinstance(result, Rejected):
        return error_response(result.to_error())
    to_json = getattr(result, "to_json", None)
    if to_json is not None:
        return json_response(to_json())
    # Ignored (a leader-decided command that no longer applied): nothing changed.
    return json_response({})


async def propose(request: web.Request, command: bytes) -> object:
    return await node_of(request).propose(command)


async def write(request: web.Request, command: bytes) -> web.Response:
    return result_response(await propose(request, command))
