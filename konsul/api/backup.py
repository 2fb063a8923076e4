"""``/cluster/snapshot`` (GET), ``/cluster/restore``, ``/cluster/recover``, and a bootstrap from
a backup: backups, restores and disaster recovery over HTTP (``konsul.backup`` does the work).

Backups and restores stream: the body of a ``GET /cluster/snapshot`` is written as the state is
encoded, the body of a restore is staged on disk as it arrives, so neither is ever whole in
memory and neither goes through a follower's write forwarding (a follower answers 307).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from konsul.api.acl import forward_headers
from konsul.api.errors import not_leader_response
from konsul.api.http import flag, index_headers, json_response, node_of
from konsul.backup import recover as recovery
from konsul.backup import save, seed, staging
from konsul.backup.file import SUFFIX as BACKUP_SUFFIX
from konsul.backup.file import Header
from konsul.backup.restore import RestoreResult
from konsul.errors import NoLeader, NotLeader

CONTENT_TYPE = "application/octet-stream"
_UPLOAD_CHUNK = 1 << 20


def _leader_only(request: web.Request) -> web.Response | None:
    """The answer of a follower (307 to the leader, 503 without one), or None on the leader."""
    node = node_of(request)
    if node.is_leader:
        return None
    leader = node.leader()
    if leader is None:
        raise NoLeader()
    return not_leader_response(request, NotLeader(leader))


async def snapshot(request: web.Request) -> web.StreamResponse:
    stale = flag(request, "stale")
    if not stale and (redirect := _leader_only(request)) is not None:
        return redirect
    node = node_of(request)
    backup = await save.backup(node, stale=stale)
    header = backup.header
    response = web.StreamResponse(headers={
        **index_headers(node, header.index),
        "Content-Type": CONTENT_TYPE,
        "Content-Disposition": f'attachment; filename="{backup_name(header)}"',
        "X-Konsul-Snapshot-Index": str(header.index),
        "X-Konsul-Snapshot-Term": str(header.term),
        "X-Konsul-Cluster-Id": header.cluster_id,
    })
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in backup.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def backup_name(header: Header) -> str:
    stamp = header.created.replace("-", "").replace(":", "")
    return f"konsul-{stamp}-{header.index}{BACKUP_SUFFIX}"


async def restore(request: web.Request) -> web.StreamResponse:
    if (redirect := _leader_only(request)) is not None:
        return redirect
    node = node_of(request)
    staged = await staging.stage(_body(request), node.settings.raft.data_dir)

    async def run() -> RestoreResult:
        try:
            return await node.restorer.restore(staged)
        finally:
            staged.discard()

    # Once under way, a restore runs to its end even if the client hangs up.
    done = await asyncio.shield(run())
    return json_response({
        "restored": True,
        "index": done.index,
        "rows_index": done.rows_index,
        "kv_keys": done.kv_count,
        "services": done.service_count,
        "checks": done.check_count,
        "source": _source(staged.header),
    })


async def bootstrap_from_backup(request: web.Request) -> web.StreamResponse:
    """``POST /cluster/bootstrap`` with a backup as its body: a new cluster with its data."""
    node = node_of(request)
    staged = await staging.stage(_body(request), node.settings.raft.data_dir)
    try:
        seeded = await seed.seed_running(node, staged)
    finally:
        staged.discard()
    raft = node.status()
    return json_response({
        "bootstrapped": True, "node_id": raft.node_id, "address": raft.address,
        "cluster_id": seeded.cluster_id, "index": seeded.index,
        "kv_keys": staged.kv_count, "services": staged.service_count,
        "source": _source(staged.header),
    })


async def recover(request: web.Request) -> web.StreamResponse:
    done = await recovery.recover(node_of(request), forward_headers(request))
    return json_response({
        "recovered": True, "cluster_id": done.cluster_id, "index": done.index,
        "term": done.term, "removed": list(done.dropped),
    })


def _source(header: Header) -> dict[str, object]:
    return {"cluster_id": header.cluster_id, "node_id": header.node_id, "index": header.index,
            "term": header.term, "created": header.created}


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(_UPLOAD_CHUNK):
        yield chunk


def add_routes(app: web.Application) -> None:
    app.router.add_get("/cluster/snapshot", snapshot)
    app.router.add_post("/cluster/restore", restore)
    app.router.add_post("/cluster/recover", recover)
