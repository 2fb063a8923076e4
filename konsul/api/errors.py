"""The one place where errors become HTTP answers: status, machine code, headers and body.

Below ``konsul.api`` nothing knows HTTP: the node, the Raft runtime and the store raise the
domain errors of ``konsul.errors`` (the store's ``Rejected`` results become them through
``Rejected.to_error``). ``ANSWERS`` gives each error class its status and the ``error`` code of
the documented body ``{"error", "message", ...details}``; a subclass without an entry answers as
its nearest listed base. ``HTTP_CODES`` does the same for aiohttp's own HTTP exceptions (an
unknown route, a method not allowed, a request it cannot parse).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from konsul.api.http import index_headers, json_response, node_of
from konsul.errors import (
    BadRequest,
    ClusteringDisabled,
    Conflict,
    CrossSiteRequest,
    KonsulError,
    NoLeader,
    NotFound,
    NotLeader,
    PeerNotTrusted,
    PermissionDenied,
    Timeout,
    TooLarge,
    Unavailable,
)

if TYPE_CHECKING:
    from konsul.node import Node


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    code: str  # the body's "error"


ANSWERS: dict[type[KonsulError], Answer] = {
    NotLeader: Answer(307, "not leader"),
    BadRequest: Answer(400, "bad request"),
    CrossSiteRequest: Answer(403, "cross-site request"),
    PermissionDenied: Answer(403, "permission denied"),
    NotFound: Answer(404, "not found"),
    Conflict: Answer(409, "conflict"),
    TooLarge: Answer(413, "too large"),
    PeerNotTrusted: Answer(502, "peer not trusted"),
    NoLeader: Answer(503, "no leader"),
    Unavailable: Answer(503, "unavailable"),  # OutcomeUnknown too
    ClusteringDisabled: Answer(503, "clustering not enabled"),
    Timeout: Answer(504, "timeout"),
    KonsulError: Answer(500, "error"),
}

# Status codes of aiohttp's own HTTP exceptions, as short machine codes like ours.
HTTP_CODES = {
    400: "bad request",
    404: "not found",
    405: "method not allowed",
    413: "too large",
    414: "uri too long",
    415: "unsupported media type",
    431: "headers too large",
}

# A 503 says "try again shortly": every one carries Retry-After.
RETRY_AFTER = {"Retry-After": "1"}


def answer_for(exc: KonsulError) -> Answer:
    for cls in type(exc).__mro__:
        answer = ANSWERS.get(cls)
        if answer is not None:
            return answer
    raise TypeError(f"not a KonsulError: {exc!r}")  # pragma: no cover - KonsulError is listed


def error_body(exc: KonsulError) -> dict[str, Any]:
    """The documented error shape, plus the fields the error carries for the caller."""
    body: dict[str, Any] = {"error": answer_for(exc).code, "message": exc.message}
    body.update(exc.details)
    if isinstance(exc, NotLeader):
        body.update(
            leader_addr=exc.leader.address,
            leader_id=exc.leader.id,
            leader_http_addr=exc.leader.http_address,
        )
    return body


def error_response(
    exc: KonsulError,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    """The answer to ``exc``; ``headers`` (a read's index headers) and ``extra`` body fields
    come first and last respectively. A follower's 307 gets its ``Location`` from
    ``not_leader_response``, which knows the request."""
    status = answer_for(exc).status
    body = error_body(exc)
    if extra:
        body.update(extra)
    if status == 503:
        headers = {**(headers or {}), **RETRY_AFTER}
    return json_response(body, status=status, headers=headers)


def read_error(request: web.Request, exc: KonsulError, index: int) -> web.Response:
    """An error answer to a read (a 404 key) still carries the read headers."""
    return index_error(node_of(request), exc, index)


def index_error(node: Node, exc: KonsulError, index: int) -> web.Response:
    return error_response(exc, headers=index_headers(node, index))


def not_leader_response(request: web.Request, exc: NotLeader) -> web.Response:
    response = error_response(exc)
    if exc.leader.http_address:
        base = node_of(request).peer_http.url(exc.leader.http_address)
        response.headers["Location"] = base + _without_token(request)
    return response


def _without_token(request: web.Request) -> str:
    """The path and query to redirect to, minus a ``?token=`` (a Location header must not
    carry a secret; the client sends its token again in a header)."""
    if "token=" not in request.query_string:
        return request.raw_path
    query = [(k, v) for k, v in request.query.items() if k != "token"]
    return str(request.rel_url.with_query(query))


def http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx (no route, wrong method, too large) in our JSON shape."""
    status = exc.status
    code = HTTP_CODES.get(status, exc.reason.lower())
    if status == 404:
        message = f"No endpoint at {request.path}."
    elif status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        message = f"Method {request.method} is not allowed on {request.path} (allowed: {allowed})."
    elif status == 413:
        message = "Request body is too large."
    else:
        message = exc.text or exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return json_response({"error": code, "message": message}, status=status, headers=headers)

