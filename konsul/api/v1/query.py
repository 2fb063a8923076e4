"""How a ``/v1`` read is served: Consul's consistency modes, blocking queries and read headers.

Consistency (Consul's three modes, chosen by the *presence* of a query flag, whatever its value):

- default ("leader"): the leader's view. The leader answers from its replica; a follower first
  learns the leader's commit index (a ReadIndex round) and waits until it has applied it.
- ``?consistent``: linearizable: a ReadIndex round confirmed by a quorum, on any member.
- ``?stale``: this member's replica as it is, even without a leader.

Blocking (``?index=N&wait=D``): an index of 0 never blocks; otherwise the answer is held until
the result's index passes N or the wait ends (default 5 minutes, at most 10, plus up to a
sixteenth of random jitter so that many watchers do not return together), then answered with
the index it has. Every answer's ``X-Consul-Index`` is at least 1: a 0 would make a client ask
again with ``index=0``, which never blocks. The indices themselves never go backwards (they are
Raft indices of the last change to a table, identical on every replica).

``block`` is the one place that parks a reader, on the topic the endpoint names (what it shows,
``konsul.watch``): a change elsewhere does not wake it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from konsul.api.encoded import json_answer, shared_body
from konsul.api.http import STOPPING, node_of
from konsul.durations import parse_duration
from konsul.errors import BadRequest
from konsul.watch import Topic

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
JITTER_FRACTION = 16

IndexFn = Callable[[], int]


@dataclass(frozen=True, slots=True)
class Read:
    """The read options of one request, parsed once."""

    mode: str  # "leader" (default), "consistent" or "stale": X-Consul-Effective-Consistency
    min_index: int  # 0: do not block
    wait: float  # seconds, already capped


def refuse_filter(request: web.Request) -> None:
    """Consul's ``?filter=`` expressions are not implemented: refused, never silently ignored
    (an ignored filter would answer more than was asked for)."""
    if request.query.get("filter"):
        raise BadRequest("Konsul does not support ?filter expressions")


def read_options(request: web.Request) -> Read:
    refuse_filter(request)
    query = request.query
    stale, consistent = "stale" in query, "consistent" in query
    if stale and consistent:
        raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
    mode = "stale" if stale else "consistent" if consistent else "leader"
    min_index = 0
    if "index" in query:
        raw = query["index"].strip()
        if not (raw.isdecimal() and raw.isascii()) or int(raw) >= 2**64:
            raise BadRequest("Invalid index")
        min_index = int(raw)
    wait = DEFAULT_WAIT
    if query.get("wait"):
        try:
            wait = parse_duration(query["wait"])
        except ValueError:
            raise BadRequest("Invalid wait time") from None
    if wait <= 0:
        wait = DEFAULT_WAIT
    return Read(mode, min_index, min(wait, MAX_WAIT))


async def read_point(request: web.Request, topic: Topic, index_fn: IndexFn) -> Read:
    """Reach the read point the request asks for, then block if it asks to. Reads of the store
    come after this returns (and always through ``node.store``: a snapshot restore replaces it)."""
    read = read_options(request)
    node = node_of(request)
    if read.mode == "consistent" or (read.mode == "leader" and not node.is_leader):
        await node.read_barrier()
    if read.min_index > 0:
        await block(request, topic, index_fn, read.min_index, read.wait)
    return read


async def block(
    request: web.Request, topic: Topic, index_fn: IndexFn, after: int, wait: float
) -> None:
    """Hold the request until ``index_fn()`` passes ``after`` (looked at whenever ``topic``
    changes), the (jittered) wait ends, or the node shuts down. Every ``/v1`` blocking query
    waits here and nowhere else."""
    if request.config_dict[STOPPING].is_set():
        return
    await node_of(request).watch(topic, index_fn, after, jittered(wait, random.random()))


def jittered(wait: float, draw: float) -> float:
    """The wait plus up to a sixteenth of it (``draw`` in [0, 1)), as Consul staggers."""
    return wait + wait / JITTER_FRACTION * draw


def meta_headers(request: web.Request, read: Read, index: int) -> dict[str, str]:
    node = node_of(request)
    # After a ReadIndex round this member was in contact with the leader just now.
    contact = node.last_contact_ms() if read.mode == "stale" else 0
    return {
        "X-Consul-Index": str(max(index, 1)),
        "X-Consul-KnownLeader": "true" if node.leader() is not None else "false",
        "X-Consul-LastContact": str(contact),
        "X-Consul-Effective-Consistency": read.mode,
    }


def answer(request: web.Request, read: Read, index: int, data: Any) -> web.Response:
    """A read's JSON answer with its read headers."""
    return web.Response(
        body=orjson.dumps(data),
        content_type="application/json",
        headers=meta_headers(request, read, index),
    )


def shared_answer(request: web.Request, read: Read, index: int, build: Callable[[], Any],
                  *extra: Hashable) -> web.Response:
    """``answer`` with a body encoded once per query and index (``konsul.api.encoded``)."""
    return json_answer(shared_body(request, index, build, *extra),
                       meta_headers(request, read, index))


def not_found(request: web.Request, read: Read, index: int) -> web.Response:
    """Consul's empty 404 (nothing matched), still with the read headers clients depend on."""
    return web.Response(status=404, headers=meta_headers(request, read, index))
