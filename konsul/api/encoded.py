"""Answers encoded once per index and shared: every reader of one query at one index gets the same
bytes (thousands of watchers woken by one change; clients listing a large catalog over and over).

``shared_body(request, index, build)`` returns the JSON encoding of ``build()`` for the request's
query as of ``index``, building it only when no answer to the same query at the same index is
cached. What makes two requests "the same query":

- the path and every query parameter except the read parameters (``index``, ``wait``,
  ``stale``, ``consistent``, ``token``), which choose when and how a read is made, never what it
  shows; an unknown parameter only splits the cache, it never merges two answers;
- the token's ``Authorizer`` (listings show only what the token may read; an ACL change makes
  new authorizers, so answers cached for the old ones are never reused);
- ``extra``: anything else the answer depends on that ``index`` does not cover (the home node
  of a ``/v1`` view, which moves with the Raft configuration).

``index`` must cover everything else the answer shows (the table index of what it lists). The
cache holds at most ``MAX_ENTRIES`` answers and ``MAX_BYTES`` in all, least recently used first
out; an answer is replaced as soon as its index moves.

``json_answer(body, headers)`` sends a large shared body (``UNJOINED_MIN`` bytes or more) as
``SharedResponse``: its few header bytes first, then the cached body object itself, handed to the
transport without a copy. (``web.Response`` joins headers and body into one new bytes object
before it writes: for a 1.7 MB catalog listing that copy was a third of the node's CPU per
request.) A small body goes with its headers in one write: a second send per answer would cost
more than the copy (thousands of watchers woken at once get small answers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from aiohttp import web

from konsul.api.acl import authorizer
from konsul.api.http import read_headers

MAX_ENTRIES = 512
MAX_BYTES = 64 << 20
READ_PARAMS = frozenset(("index", "wait", "stale", "consistent", "token"))
UNJOINED_MIN = 64 << 10


class EncodedAnswers:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._answers: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self.builds = 0  # answers encoded (the rest were shared)

    def body(self, key: Hashable, index: int, build: Callable[[], Any]) -> bytes:
        answers = self._answers
        found = answers.get(key)
        if found is not None and found[0] == index:
            answers.move_to_end(key)
            return found[1]
        body = orjson.dumps(build())
        self.builds += 1
        if found is not None:
            self._bytes -= len(found[1])
        answers[key] = (index, body)
        answers.move_to_end(key)
        self._bytes += len(body)
        while len(answers) > self._max_entries or self._bytes > self._max_bytes:
            _, (_, dropped) = answers.popitem(last=False)
            self._bytes -= len(dropped)
        return body


class SharedResponse(web.Response):
    """A ``web.Response`` whose headers are written on their own, so that the body (a shared,
    immutable bytes object) reaches the transport as is, never joined to them. aiohttp's
    ``StreamResponse`` does the same; ``Response`` opts out to coalesce small answers, which
    this class undoes (``tests/scale/test_encoded.py`` checks that the switch still exists)."""

    _send_headers_immediately = True


def json_answer(body: bytes, headers: dict[str, str]) -> web.Response:
    """A 200 carrying the shared JSON ``body`` (see the module docstring)."""
    response = SharedResponse if len(body) >= UNJOINED_MIN else web.Response
    return response(body=body, content_type="application/json", headers=headers)


ENCODED = web.AppKey("konsul.encoded", EncodedAnswers)


def install(app: web.Application) -> None:
    app[ENCODED] = EncodedAnswers()


def shared_body(
    request: web.Request, index: int, build: Callable[[], Any], *extra: Hashable
) -> bytes:
    """The JSON body of this query's answer at ``index`` (see the module docstring)."""
    query = tuple(sorted((k, v) for k, v in request.query.items() if k not in READ_PARAMS))
    key = (request.path, query, authorizer(request), extra)
    return request.config_dict[ENCODED].body(key, index, build)


def shared_read_response(request: web.Request, index: int, build: Callable[[], Any]
                         ) -> web.Response:
    """A native read's answer (``http.read_response``) with a shared body."""
    return json_answer(shared_body(request, index, build), read_headers(request, index))
