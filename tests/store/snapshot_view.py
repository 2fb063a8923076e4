"""A snapshot's bytes as one map, the shape of format 2: what tests compare and edit."""

from __future__ import annotations

from typing import Any

import msgpack


def as_map(data: bytes, **options: Any) -> dict[str, Any]:
    """The format 3 objects of ``data`` folded into format 2's single map (``msgpack.Unpacker``
    options, e.g. ``use_list=False``)."""
    head, *rest = _objects(data, **options)
    end = rest.index(None)
    kv: dict[str, Any] = {}
    for block in rest[:end]:
        kv.update(block)
    services, checks, acl = rest[end + 1:]
    out = {name: head[name] for name in ("last_applied", "kv_index", "services_index",
                                         "checks_index")}
    return {"format": 2, **out, "kv": kv, "services": services, "checks": checks, "acl": acl}


def _objects(data: bytes, **options: Any) -> list[Any]:
    unpacker = msgpack.Unpacker(**options)
    unpacker.feed(data)
    return list(unpacker)
