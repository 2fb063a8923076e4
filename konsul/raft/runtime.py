"""The asyncio runtime around the sans-I/O Raft core.

The core decides; this module does the I/O. It owns the clock (a tick every ``TICK_SECONDS``),
the write-ahead log, the snapshot store, the transport (absent on a standalone node) and the
state machine, and turns the core's ``Ready`` batches into effects, strictly in order:

1. hard state (term, vote) made durable;
2. a snapshot received from a leader (written to a file as its chunks came): made durable,
   restored into the state machine a block at a time, log reset;
3. log truncation and new entries written, then **one** fdatasync for the whole batch
   (group commit: proposals that arrive while an fsync runs wait in the core and share the next);
   on the event loop while the disk syncs fast, in a worker thread once it is slow (``_durably``);
4. messages sent (only now, because they may promise what 1-3 made durable);
5. ``core.persisted``; committed entries applied and their proposals answered;
6. linearizable reads released once the state machine has applied up to their read index.

Everything the HTTP layer needs goes through ``propose``, ``read_barrier``, ``wait_applied`` and
the cluster operations, which raise the domain errors of ``konsul.errors`` (``NotLeader``,
``NoLeader``, ``OutcomeUnknown``, ``Unavailable``); the API turns them into HTTP answers.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from konsul.config import RaftSettings
from konsul.errors import NoLeader, NotLeader, OutcomeUnknown, Unavailable
from konsul.logs import event
from konsul.metrics import Metrics
from konsul.raft.core import CoreConfig, NotLeaderError, ProposalRejected, RaftCore, Ready, Role
from konsul.raft.messages import (
    AppendEntries,
    InstallSnapshot,
    Message,
    TimeoutNow,
    decode_configuration,
)
from konsul.raft.types import Configuration, Entry, EntryKind, Member, SnapshotMeta
from konsul.storage.snapshots import IncomingSnapshot, SnapshotStore
from konsul.storage.wal import DEFAULT_SEGMENT_BYTES, WriteAheadLog

log = logging.getLogger("konsul.raft")

TICK_SECONDS = 0.01
# How long a membership change waits for what holds it back to pass (run_config_change).
CONFIG_CHANGE_WAIT = 5.0

# A sync this fast (a moving average) runs on the event loop: handing it to a thread and back
# costs more (two wake-ups, and under load the worker waits for the GIL to report back). A
# slower disk gets a worker thread, so that heartbeats and reads go on while it syncs.
INLINE_SYNC_SECONDS = 0.0005

# What only a leader sends (see RaftRuntime._handle).
_LEADER_MESSAGES = (AppendEntries, InstallSnapshot, TimeoutNow)


class StateMachine(Protocol):
    """What the runtime needs of the replicated state machine (``konsul.store.StateMachine``).

    ``apply`` never raises: a command that cannot be applied is a result, and counted in
    ``apply_errors``. ``snapshot_chunks`` captures the state at once and encodes it as it is
    iterated, so the state can move on while the snapshot is written (in a worker thread);
    ``restore_stream`` builds the state from a snapshot read a block at a time. Neither holds
    a whole snapshot in memory. While ``restore_pending`` (an online restore is open, see
    ``konsul/store/restore.py``) no snapshot is taken.
    """

    last_applied: int
    apply_errors: int

    @property
    def restore_pending(self) -> bool: ...

    def apply(self, index: int, data: bytes) -> object: ...
    def advance(self, index: int) -> None: ...
    def snapshot_chunks(self) -> Iterator[bytes]: ...
    def restore(self, data: bytes) -> None: ...
    def restore_stream(self, pieces: Iterable[bytes]) -> None: ...


class Transport(Protocol):
    """How messages reach the other members (``konsul.raft.transport.TcpTransport``).

    The runtime attaches itself when it is constructed (what to call with a message received,
    when a peer becomes unreachable, and where a peer is), and starts and stops the transport
    with itself."""

    def attach(
        self,
        resolve: Callable[[str], str | None],
        deliver: Callable[[Message], None],
        on_unreachable: Callable[[str], None],
    ) -> None: ...
    def send(self, messages: Sequence[Message]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def core_config(settings: RaftSettings) -> CoreConfig:
    """The guide's durations in the core's ticks."""

    def ticks(seconds: float) -> int:
        return max(1, round(seconds / TICK_SECONDS))

    return CoreConfig(
        heartbeat_timeout_ticks=ticks(settings.heartbeat_timeout),
        election_timeout_ticks=ticks(settings.election_timeout),
        leader_lease_ticks=ticks(settings.leader_lease_timeout),
        commit_ticks=ticks(settings.commit_timeout),
        max_append_entries=settings.max_append_entries,
        max_append_bytes=settings.max_append_bytes,
        max_inflight_bytes=settings.max_inflight_bytes,
    )


@dataclass(frozen=True, slots=True)
class SavedSnapshot:
    meta: SnapshotMeta
    size_bytes: int


@dataclass(slots=True)
class _Proposal:
    index: int
    term: int
    future: asyncio.Future[object]
    deadline: float  # time.monotonic() after which it is answered "outcome unknown"


def _log_continues(meta: SnapshotMeta, entries: list[Entry], first_index: int) -> bool:
    """Whether the recovered log can follow the snapshot: it reaches the snapshot's index and
    holds the snapshot's last entry with the same term (or was compacted past it)."""
    last = entries[-1].index if entries else first_index - 1
    if last < meta.index:
        return False
    if first_index > meta.index:
        return True
    return entries[meta.index - first_index].term == meta.term


class RaftRuntime:
    def __init__(
        self,
        node_id: str,
        settings: RaftSettings,
        fsm: StateMachine,
        metrics: Metrics,
        *,
        transport: Transport | None = None,
        rng: random.Random | None = None,
        propose_timeout: float = 30.0,
        wal_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.node_id = node_id
        self.settings = settings
        self.fsm = fsm
        self.metrics = metrics
        self.transport = transport
        self.propose_timeout = propose_timeout
        self._rng = rng or random.Random()
        self.wal = WriteAheadLog.open(f"{settings.data_dir}/wal", segment_bytes=wal_segment_bytes)
        self.snapshots = SnapshotStore(
            f"{settings.data_dir}/snapshots", settings.snapshot_retention
        )
        # A snapshot from the leader goes to a file as its chunks arrive (never whole in memory)
        self._incoming = IncomingSnapshot(self.snapshots)
        self.core = self._recover()
        self._proposals: dict[int, _Proposal] = {}
        # The same proposals in the order they were made, hence of their deadlines (one timeout
        # for all): the ticker expires them from the left, cheaper than a timer per write.
        self._by_deadline: collections.deque[_Proposal] = collections.deque()
        self._reads: dict[int, asyncio.Future[None]] = {}
        self._reads_waiting_apply: list[tuple[int, int]] = []  # (read index, ctx)
        self._next_read_ctx = 1
        self._wake = asyncio.Event()
        self._applied = asyncio.Event()  # replaced after every applied batch: a cheap broadcast
        self._wal_lock = asyncio.Lock()
        self._sync_seconds = 0.0  # moving average of the WAL's syncs (see INLINE_SYNC_SECONDS)
        self._snapshot_lock = asyncio.Lock()
        self._ready_lock = asyncio.Lock()  # held while Readies are handled (reset_storage)
        self._snapshot_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._last_leader: str | None = None
        self._last_role: Role | None = None
        self.applied_term = self.core.snapshot_meta.term if self.core.snapshot_meta else 0
        self._applied_config = (
            self.core.snapshot_meta.config if self.core.snapshot_meta else Configuration()
        )
        self.last_snapshot: SnapshotMeta | None = self.core.snapshot_meta
        self.on_config_applied: list[Callable[[Configuration], None]] = []
        # Called after every applied batch (and snapshot restore), e.g. to wake blocking reads.
        self.on_applied: list[Callable[[], None]] = []
        # Read when scraped, not set after every Ready: a gauge's set() is ~5 Python calls, and
        # the loop wakes 3 times per write.
        metrics.raft_peers_total.set_function(lambda: len(self.core.configuration.members))
        metrics.raft_last_index.set_function(lambda: self.core.last_index)
        metrics.raft_commit_index.set_function(lambda: self.core.commit_index)
        metrics.raft_applied_index.set_function(lambda: self.fsm.last_applied)
        if transport is not None:
            transport.attach(self.address_of, self.receive, self.peer_unreachable)

    # ----------------------------------------------------------------- recovery and lifecycle

    def _recover(self, *, load_state: bool = True) -> RaftCore:
        """Rebuild the core from disk: newest valid snapshot, then the log entries after it.
        ``load_state=False``: the state machine keeps what it holds (it is at least as far as
        the snapshot; the log replays what it has not applied)."""
        if load_state:
            loaded = self.snapshots.load_latest_into(
                lambda _, pieces: self.fsm.restore_stream(pieces)
            )
            meta = loaded[0] if loaded is not None else None
        else:
            meta = self.snapshots.latest_meta()
        after = meta.index if meta else 0
        entries = self.wal.entries()
        if meta is not None and not _log_continues(meta, entries, self.wal.first_index):
            # A crash between saving a snapshot received from the leader and resetting the log.
            event(
                log,
                logging.WARNING,
                "log does not continue the snapshot; dropping the log",
                snapshot_index=meta.index,
                log_last_index=self.wal.last_index,
            )
            self.wal.reset(meta.index, meta.term)
            entries = []
        entries = [e for e in entries if e.index > after]
        if entries and entries[0].index != after + 1:
            raise RuntimeError(
                f"log starts at index {entries[0].index} but the newest readable snapshot ends at "
                f"{after}: entries in between are missing from {self.settings.data_dir}"
            )
        event(
            log,
            logging.INFO,
            "storage recovered",
            snapshot_index=after,
            log_entries=len(entries),
            term=self.wal.hard_state.term,
        )
        return RaftCore(
            self.node_id,
            core_config(self.settings),
            self._rng,
            self.snapshots,
            snapshot_sink=self._incoming,
            hard_state=self.wal.hard_state,
            snapshot=meta,
            entries=entries,
        )

    async def start(self) -> None:
        if self.transport is not None:
            await self.transport.start()
        self._running = True
        self._tasks = [
            asyncio.create_task(self._ready_loop(), name="raft-ready"),
            asyncio.create_task(self._ticker(), name="raft-ticker"),
            asyncio.create_task(self._snapshot_timer(), name="raft-snapshot-timer"),
        ]
        self._wake.set()

    async def stop(self) -> None:
        self._running = False
        if self._snapshot_task is not None:
            self._tasks.append(self._snapshot_task)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(Unavailable("The node is shutting down."))
        async with self._wal_lock:
            self.wal.close()
        if self.transport is not None:
            await self.transport.stop()

    def _fail_all(self, error: Exception) -> None:
        for proposal in self._proposals.values():
            if not proposal.future.done():
                proposal.future.set_exception(error)
        self._proposals.clear()
        self._by_deadline.clear()
        for future in self._reads.values():
            if not future.done():
                future.set_exception(error)
        self._reads.clear()

    # ----------------------------------------------------------------------------- the loops

    async def _ticker(self) -> None:
        while self._running:
            await asyncio.sleep(TICK_SECONDS)
            self.core.tick()
            self._wake.set()
            self._expire_proposals()

    async def _snapshot_timer(self) -> None:
        while self._running:
            await asyncio.sleep(self.settings.snapshot_interval)
            last = self.last_snapshot.index if self.last_snapshot else 0
            if self.fsm.last_applied > last and not self.fsm.restore_pending:
                await self.take_snapshot()

    async def _ready_loop(self) -> None:
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            async with self._ready_lock:
                while self.core.has_ready():
                    await self._handle(self.core.ready())
            self._observe()

    async def _handle(self, rd: Ready) -> None:
        # A leader's replication messages need nothing from this Ready to be durable: its term
        # was persisted when it campaigned, and its own entries count towards a majority only
        # once persisted() says so. Sending them first overlaps the followers' fsync with ours.
        late = rd.messages
        if rd.messages and self.transport is not None:
            early = [m for m in rd.messages if isinstance(m, _LEADER_MESSAGES)]
            if early:
                self.transport.send(early)
                late = [m for m in rd.messages if not isinstance(m, _LEADER_MESSAGES)]
        async with self._wal_lock:
            if rd.hard_state is not None:
                hard_state = rd.hard_state
                await self._durably(lambda: self.wal.save_hard_state(hard_state))
            if rd.snapshot is not None:
                await self._install_snapshot(rd.snapshot.meta, rd.snapshot.data)
            if rd.truncate_from is not None:
                self.wal.truncate_from(rd.truncate_from)
            if rd.entries:
                self.wal.append(rd.entries)
            if rd.entries or rd.truncate_from is not None:
                await self._durably(self.wal.sync)
        if late and self.transport is not None:
            self.transport.send(late)
        if rd.entries:
            last = rd.entries[-1]
            self.core.persisted(last.index, last.term)
            self._wake.set()
        if rd.committed:
            self._apply(rd.committed)
        for read in rd.read_states:
            self._release_read(read.ctx, read.index)
        for ctx in rd.dropped_reads:
            future = self._reads.pop(ctx, None)
            if future is not None and not future.done():
                future.set_exception(NoLeader("Leadership could not be confirmed for this read."))
        if self._snapshot_due() and self._snapshot_task is None:
            self._snapshot_task = asyncio.create_task(self._background_snapshot())

    async def _durably(self, sync: Callable[[], None]) -> None:
        """Run a WAL write that fsyncs: inline or in a thread (see INLINE_SYNC_SECONDS)."""
        if self._sync_seconds < INLINE_SYNC_SECONDS:
            self._timed_sync(sync)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._timed_sync, sync)

    def _timed_sync(self, sync: Callable[[], None]) -> None:
        started = time.perf_counter()
        sync()
        # an average over the last few: one slow sync does not send the next ones to a thread
        self._sync_seconds += (time.perf_counter() - started - self._sync_seconds) / 8

    async def _install_snapshot(self, meta: SnapshotMeta, data: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        if data is None:  # received into a file (IncomingSnapshot): made durable, read back
            await loop.run_in_executor(None, self._incoming.commit, meta)
            self.fsm.restore_stream(self.snapshots.read_body(meta))
        else:
            await loop.run_in_executor(None, self.snapshots.save, meta, data)
            self.fsm.restore(data)
        self.wal.reset(meta.index, meta.term)
        self.applied_term = meta.term
        self._applied_config = meta.config
        self.last_snapshot = meta
        self.core.applied(meta.index)
        self._notify_applied()
        event(log, logging.INFO, "snapshot installed from leader", index=meta.index, term=meta.term)

    # ---------------------------------------------------------------------------- applying

    def _apply(self, entries: list[Entry]) -> None:
        m = self.metrics
        errors_before = self.fsm.apply_errors
        for entry in entries:
            result: object = None
            if entry.kind == EntryKind.COMMAND:
                started = time.perf_counter()
                result = self.fsm.apply(entry.index, entry.data)
                m.raft_apply.inc()
                m.raft_apply_duration.observe(time.perf_counter() - started)
            else:
                self.fsm.advance(entry.index)
                if entry.kind == EntryKind.CONFIG:
                    self._applied_config = decode_configuration(entry.data)
                    for callback in self.on_config_applied:
                        callback(self._applied_config)
            self.applied_term = entry.term
            self._resolve(entry, result)
        if self.fsm.apply_errors != errors_before:
            m.raft_apply_errors.inc(self.fsm.apply_errors - errors_before)
        self.core.applied(entries[-1].index)
        applied = entries[-1].index
        while self._reads_waiting_apply and self._reads_waiting_apply[0][0] <= applied:
            _, ctx = self._reads_waiting_apply.pop(0)
            self._finish_read(ctx)
        self._notify_applied()

    def _resolve(self, entry: Entry, result: object) -> None:
        proposal = self._proposals.pop(entry.index, None)
        if proposal is None or proposal.future.done():
            return
        if proposal.term == entry.term:
            proposal.future.set_result(result)
        else:
            proposal.future.set_exception(
                Unavailable("Leadership changed before the write committed; it was not applied.")
            )

    def _notify_applied(self) -> None:
        self._applied.set()
        self._applied = asyncio.Event()
        for callback in self.on_applied:
            callback()

    async def wait_applied(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some apply, or the timeout passes. Every
        waiter wakes on every apply: for the few internal waits; blocking reads, which may be
        thousands, wait on what they read (``konsul.watch``)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._applied.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    # ---------------------------------------------------------------------------- proposals

    async def propose(self, data: bytes) -> object:
        try:
            index, term = self.core.propose(data)
        except NotLeaderError as exc:
            raise self._not_leader(exc.leader_id) from None
        except ProposalRejected as exc:
            # A leadership transfer (SIGTERM, rolling restart) is under way: nothing was
            # proposed, so this is the retryable "no leader", not an unexpected error.
            reason = f"Leadership is being handed over ({exc.reason}); retry shortly."
            raise NoLeader(reason) from None
        return await self._await_entry(index, term)

    async def _await_entry(self, index: int, term: int) -> object:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        proposal = _Proposal(index, term, future, time.monotonic() + self.propose_timeout)
        self._proposals[index] = proposal
        self._by_deadline.append(proposal)
        self._wake.set()
        return await future

    def _expire_proposals(self) -> None:
        """Answer the writes that did not commit within the propose timeout."""
        now = time.monotonic()
        queue = self._by_deadline
        while queue and (queue[0].deadline <= now or queue[0].future.done()):
            proposal = queue.popleft()
            if self._proposals.get(proposal.index) is proposal:
                del self._proposals[proposal.index]
            if not proposal.future.done():
                proposal.future.set_exception(
                    OutcomeUnknown("The write did not commit in time; its outcome is unknown.")
                )

    async def run_config_change(self, change: Callable[[], tuple[int, int]]) -> None:
        """Propose a membership change (a core method) and wait until it is applied.

        A change the core would refuse only for now (``core.config_change_blocker``: a leader
        elected a moment ago that has not committed its term's first entry, another change or
        a leadership transfer under way) is held until that passes, for at most
        ``CONFIG_CHANGE_WAIT``, as hashicorp/raft's leader holds one until its configuration is
        stable: a leave forwarded to a new leader, or two removals in a row, then succeed
        instead of failing with a conflict the caller could do nothing about but retry.
        """
        deadline = time.monotonic() + CONFIG_CHANGE_WAIT
        while self.core.config_change_blocker is not None and time.monotonic() < deadline:
            await asyncio.sleep(TICK_SECONDS)
        try:
            index, term = change()
        except NotLeaderError as exc:
            raise self._not_leader(exc.leader_id) from None
        await self._await_entry(index, term)

    def _not_leader(self, leader_id: str | None) -> Exception:
        member = self.core.configuration.get(leader_id) if leader_id else None
        if member is None:
            return NoLeader()
        return NotLeader(member)

    # -------------------------------------------------------------------------------- reads

    async def read_barrier(self, timeout: float = 5.0) -> None:
        ctx = self._next_read_ctx
        self._next_read_ctx += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = future
        self.core.read_index(ctx)
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            self._reads.pop(ctx, None)
            raise NoLeader(
                "Leadership could not be confirmed in time for a consistent read."
            ) from None

    def _release_read(self, ctx: int, index: int) -> None:
        if self.fsm.last_applied >= index:
            self._finish_read(ctx)
        else:
            bisect.insort(self._reads_waiting_apply, (index, ctx))

    def _finish_read(self, ctx: int) -> None:
        future = self._reads.pop(ctx, None)
        if future is not None and not future.done():
            future.set_result(None)

    # ---------------------------------------------------------------------------- snapshots

    def _snapshot_due(self) -> bool:
        last = self.last_snapshot.index if self.last_snapshot else 0
        return (
            self.fsm.last_applied - last >= self.settings.snapshot_threshold
            and not self.fsm.restore_pending
        )

    async def _background_snapshot(self) -> None:
        """The threshold was crossed: snapshot without holding up the ready loop."""
        try:
            await self.take_snapshot()
        except Exception:  # a failed snapshot is retried at the next threshold or interval
            log.exception("snapshot failed")
        finally:
            self._snapshot_task = None

    async def take_snapshot(self, *, keep_after: int | None = None) -> SavedSnapshot:
        """Snapshot the applied state, then compact the core's log and the WAL behind it.

        The state is captured at once; encoding and writing happen, piece by piece, in a
        worker thread while the node goes on applying. One snapshot at a time. ``keep_after``:
        keep no entry at or before that index in the core's log, however many trailing logs
        are configured (after an online restore, whose chunks are of no use to anyone once
        committed: a member that needs them gets this snapshot instead).

        Raises ``Unavailable`` while an online restore is open (its state is in no snapshot).
        """
        async with self._snapshot_lock:
            return await self._take_snapshot(keep_after)

    async def _take_snapshot(self, keep_after: int | None) -> SavedSnapshot:
        if self.fsm.restore_pending:
            raise Unavailable("A snapshot restore is under way; snapshot once it has ended.")
        meta = SnapshotMeta(self.fsm.last_applied, self.applied_term, self._applied_config)
        if self.last_snapshot is not None and self.last_snapshot.index == meta.index:
            return SavedSnapshot(meta, self.snapshots.snapshot_size(meta))
        pieces = self.fsm.snapshot_chunks()
        loop = asyncio.get_running_loop()
        saved = await loop.run_in_executor(None, self.snapshots.save_stream, meta, pieces)
        async with self._wal_lock:
            if self.last_snapshot is not None and self.last_snapshot.index >= meta.index:
                # A newer snapshot arrived from the leader while this one was being written.
                return SavedSnapshot(meta, saved.size)
            self.last_snapshot = meta
            trailing = self.settings.trailing_logs
            if keep_after is not None:
                trailing = min(trailing, max(0, meta.index - keep_after))
            self.core.compact(meta, trailing)
            # Keep the log back to the oldest retained snapshot too, so that a corrupt newest
            # snapshot can fall back to the previous one plus the log.
            oldest = min(info.meta.index for info in self.snapshots.list())
            self.wal.compact(min(meta.index - self.settings.trailing_logs, oldest))
        self.metrics.raft_snapshot.inc()
        event(
            log, logging.INFO, "snapshot taken", index=meta.index, term=meta.term,
            bytes=saved.size,
        )
        return SavedSnapshot(meta, saved.size)

    # ---------------------------------------------------------------------- storage reset

    async def reset_storage(self, rewrite: Callable[[], None], *, load_state: bool) -> None:
        """Rewrite this node's Raft storage, then go on from it as after a restart.

        For the rare operations that change what a node is (``konsul.backup``): founding a
        cluster from a backup on an empty node, recovering a survivor as a cluster of one.
        Readies and snapshots are held off meanwhile, ``rewrite`` runs in a worker thread (on
        ``wal`` and ``snapshots``), and writes and reads still waiting fail with
        ``Unavailable``. ``load_state``: rebuild the state machine from the new snapshot.
        """
        async with self._snapshot_lock, self._ready_lock, self._wal_lock:
            self._fail_all(Unavailable("This node's Raft state was replaced; retry."))
            await asyncio.get_running_loop().run_in_executor(None, rewrite)
            self.core = self._recover(load_state=load_state)
            meta = self.core.snapshot_meta
            self.last_snapshot = meta
            if load_state and meta is not None:
                self.applied_term = meta.term
                self._applied_config = meta.config
            for callback in self.on_config_applied:
                callback(self.core.configuration)
        self._wake.set()

    # ------------------------------------------------------------------------ observations

    def _observe(self) -> None:
        core, m = self.core, self.metrics
        if core.role != self._last_role:
            if self._last_role is Role.LEADER:
                # In the same term with no leader known: check-quorum (no majority heard within
                # the leader lease); a newer term or a known leader: someone else took over.
                event(log, logging.INFO, "leadership lost", term=core.term,
                      leader=core.leader_id or "none")
                self._lost_leadership()
            self._last_role = core.role
            m.set_role(core.role.value)
        if core.leader_id != self._last_leader:
            self._last_leader = core.leader_id
            if core.leader_id is not None:
                m.raft_leader_changes.inc()
                event(log, logging.INFO, "leader elected", leader=core.leader_id, term=core.term)

    def _lost_leadership(self) -> None:
        """Bound the wait of the writes still pending when this node stops leading.

        Normally the next leader commits (or overwrites) their entries within moments and
        ``_resolve`` answers them as usual; a write of ours that it commits is still a success.
        But a leader cut off from its majority learns nothing until the partition heals, and its
        clients would wait the full propose timeout (30 s). After a heartbeat plus an election
        timeout, the writes still pending are answered "outcome unknown", as for a timeout.
        """
        pending = [p.future for p in self._proposals.values() if not p.future.done()]
        if not pending:
            return
        grace = self.settings.heartbeat_timeout + self.settings.election_timeout

        def expire() -> None:
            reason = "Leadership was lost before the write committed; its outcome is unknown."
            expired = [f for f in pending if not f.done()]
            for future in expired:
                future.set_exception(OutcomeUnknown(reason))
            for index in [i for i, p in self._proposals.items() if p.future.done()]:
                del self._proposals[index]
            if expired:
                event(log, logging.INFO, "pending writes expired", writes=len(expired))

        asyncio.get_running_loop().call_later(grace, expire)

    def address_of(self, node_id: str) -> str | None:
        """Where to reach a peer: its address in the configuration (None for us, or a stranger)."""
        member = self.core.configuration.get(node_id)
        return member.address if member is not None and node_id != self.node_id else None

    def receive(self, message: Message) -> None:
        self.core.step(message)
        self._wake.set()

    def peer_unreachable(self, peer_id: str) -> None:
        self.core.peer_unreachable(peer_id)
        self._wake.set()

    def poke(self) -> None:
        """Let the ready loop run after a direct call on the core."""
        self._wake.set()

    def membership(self) -> tuple[Member, ...]:
        return self.core.configuration.members
