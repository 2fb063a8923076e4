"""A consistent backup, streamed as it is encoded (``GET /cluster/snapshot``).

Consistent means: the state at one applied index, holding every write acknowledged before the
request arrived. The leader confirms it still leads (a ReadIndex round, as for a ``?consistent``
read) and waits until it has applied that far; the state is then captured at once (pointer
copies of the tables, on the event loop, between two applies) and encoded a block at a time in
a worker thread while the node goes on applying writes. The file is never whole in memory, and
its size is not known until its last byte: its checksum is a trailer (``konsul.backup.file``).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from konsul.backup.file import Header, write
from konsul.errors import Unavailable
from konsul.store.snapshot import FORMAT

if TYPE_CHECKING:
    from konsul.node import Node


@dataclass(frozen=True, slots=True)
class Backup:
    header: Header
    chunks: AsyncIterator[bytes]


async def backup(node: Node, *, stale: bool = False) -> Backup:
    """The node's state as a backup file. ``stale``: this node's replica as it is, without the
    ReadIndex round (any member, even with no leader); otherwise the caller checked that this
    node leads."""
    if not stale:
        await node.read_barrier()
    store = node.store
    if store.restore_pending:
        raise Unavailable("A snapshot restore is under way; take the backup once it has ended.")
    header = Header(
        cluster_id=node.identity.value,
        node_id=node.node_id,
        index=store.last_applied,
        term=node.runtime.applied_term,
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        store_format=FORMAT,
        kv_count=store.kv_count,
        service_count=store.service_count,
        check_count=store.check_count,
    )
    pieces = write(header, store.snapshot_chunks())  # (captured now; encoded as iterated)
    return Backup(header, in_worker_thread(pieces))


async def in_worker_thread(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each next piece computed in a worker thread, so the event loop serves on meanwhile."""
    loop = asyncio.get_running_loop()
    end = object()
    while True:
        piece = await loop.run_in_executor(None, next, pieces, end)
        if piece is end:
            return
        assert isinstance(piece, bytes)
        yield piece
