"""Online restore: a checked backup replaces a running cluster's state through the Raft log.

The leader stages the upload (``staging``: nothing changes unless the whole file is intact),
then proposes ``restore_begin``, the snapshot in ``restore_chunk`` entries of ``CHUNK_BYTES``
(a window of them in flight, as replication caps bytes in flight), and ``restore_commit``. The
state machine builds the new tables as the chunks apply and swaps them in at the commit, on
every member at the same index (``konsul.store.restore`` explains the rest, and why every
other write waits meanwhile). Once committed, every member snapshots at once and drops the
chunks from its in-memory log: a member that still needs them gets that snapshot instead.

If the restore cannot finish (leadership lost, a chunk refused), the leader proposes
``restore_abort`` and answers that nothing changed. A restore left open by a leader that died
is aborted by the next leader (``Restorer.reap``): otherwise writes would wait for it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from konsul.backup.staging import Staged
from konsul.errors import Conflict, KonsulError, OutcomeUnknown, Unavailable
from konsul.logs import event
from konsul.store import commands
from konsul.store.types import Event, Rejected, Restored, Restoring

if TYPE_CHECKING:
    from konsul.node import Node

log = logging.getLogger("konsul.backup")

CHUNK_BYTES = 512 * 1024  # the largest KV value: an entry size replication already handles
WINDOW = 8  # chunks proposed and not yet applied (4 MiB, the default in-flight byte cap)
REAP_INTERVAL = 1.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RestoreResult:
    index: int  # the index of the commit: the state is the backup's from here on
    rows_index: int  # the index every restored row carries (the begin's)
    kv_count: int
    service_count: int
    check_count: int
    source_index: int
    source_cluster: str


class Restorer:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = asyncio.Lock()
        self.driving: str | None = None  # the restore this node's leader is proposing
        node.store.listeners.append(self._on_store_event)
        self._compaction: asyncio.Task[None] | None = None

    async def restore(self, staged: Staged) -> RestoreResult:
        """Propose the staged backup through the log; the commit's result, or an error with
        the state unchanged (``OutcomeUnknown`` if the commit's fate could not be learned)."""
        if self._lock.locked():
            raise Conflict("Another restore is under way on this node; wait for it to end.")
        async with self._lock:
            restore_id = uuid.uuid4().hex
            self.driving = restore_id
            try:
                return await self._run(restore_id, staged)
            except OutcomeUnknown:
                raise
            except BaseException as exc:
                await self._abort(restore_id, str(exc) or type(exc).__name__)
                raise
            finally:
                self.driving = None

    async def _run(self, restore_id: str, staged: Staged) -> RestoreResult:
        node = self._node
        header = staged.header
        event(log, logging.INFO, "restore started", id=restore_id, bytes=staged.size,
              source_cluster=header.cluster_id, source_index=header.index)
        begun = await node.propose(commands.restore_begin(
            restore_id, staged.size, staged.sha256, header.index, header.term))
        _expect(begun, Restoring)
        in_flight: deque[asyncio.Task[object]] = deque()
        offset = 0
        try:
            async for piece in staged.pieces(CHUNK_BYTES):
                in_flight.append(asyncio.ensure_future(
                    node.propose(commands.restore_chunk(restore_id, offset, piece))))
                offset += len(piece)
                if len(in_flight) >= WINDOW:
                    _expect(await in_flight.popleft(), Restoring)
            while in_flight:
                _expect(await in_flight.popleft(), Restoring)
        finally:
            for task in in_flight:
                task.cancel()
        try:
            done = await node.propose(commands.restore_commit(restore_id))
        except Unavailable as exc:
            raise OutcomeUnknown(
                f"The restore's commit may or may not have taken effect ({exc.message}); "
                "check the cluster's state before retrying."
            ) from None
        restored = _expect(done, Restored)
        commit_index = node.store.last_applied
        event(log, logging.INFO, "restore committed", id=restore_id, index=commit_index,
              kv_keys=restored.kv, services=restored.services)
        return RestoreResult(commit_index, restored.index, restored.kv, restored.services,
                             restored.checks, header.index, header.cluster_id)

    async def _abort(self, restore_id: str, reason: str) -> None:
        pending = self._node.store.restoring
        if pending is None or pending.id != restore_id or not self._node.is_leader:
            return
        with contextlib.suppress(KonsulError):
            await self._node.propose(commands.restore_abort(restore_id, reason))
        event(log, logging.WARNING, "restore aborted", id=restore_id, reason=reason)

    async def reap(self) -> None:
        """On the leader: abort a restore nobody here drives (its leader died or stepped down
        while proposing it), so that writes are accepted again."""
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            pending = self._node.store.restoring
            if pending is not None and self._node.is_leader and pending.id != self.driving:
                await self._abort(pending.id, "its leader is gone; the next one dropped it")

    def _on_store_event(self, change: Event) -> None:
        """After a restore, snapshot at once and drop the entries before it from memory."""
        if change.kind != "restored" or self._compaction is not None:
            return
        self._compaction = asyncio.get_running_loop().create_task(self._compact(change.index))

    async def _compact(self, index: int) -> None:
        try:
            await self._node.runtime.take_snapshot(keep_after=index)
        except Exception as exc:  # the next threshold or interval snapshots anyway
            event(log, logging.WARNING, "snapshot after restore failed", error=exc)
        finally:
            self._compaction = None


def _expect(result: object, kind: type[T]) -> T:
    if isinstance(result, kind):
        return result
    if isinstance(result, Rejected):
        raise result.to_error()
    raise Unavailable(f"The restore got an unexpected answer: {result!r}.")
