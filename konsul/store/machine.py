"""StateMachine: applies committed commands in log order; snapshot, restore, export; reads.

Commands (``konsul.store.schema``: one dataclass per ``op``, built by ``konsul.store.commands``).
The table is rendered from those types by ``schema.command_table()``; a test keeps it so:

==================  ====================================  ==========================================
op                  fields                                result
==================  ====================================  ==========================================
kv_set              key, value, flags, cas                KVWritten | Rejected(CONFLICT)
kv_delete           key, cas, recurse                     KVDeleted | Rejected(CONFLICT)
txn                 ops: [TxnOp]                          TxnDone | Rejected(CONFLICT, errors)
service_register    service: ServiceDef                   ServiceWritten | Rejected(CONFLICT)
service_deregister  id                                    ServiceWritten | Rejected(NOT_FOUND)
service_heartbeat   id                                    ServiceWritten | Rejected(NOT_FOUND)
check_ttl           id, status, output                    CheckWritten | Rejected(NOT_FOUND|INVALID)
check_set           id, status, output                    CheckWritten | Rejected(NOT_FOUND)
check_probe         id, status, output, seen              CheckWritten | Ignored
service_expire      id, seen                              ServiceWritten | Ignored
check_expire        id, seen                              CheckWritten | Ignored
check_reap          id, seen                              ServiceWritten | Ignored
import              kv: [KVItem], services: [ServiceDef]  Imported | Rejected(CONFLICT)
acl_policy_set      id, name, description, rules          AclWritten | Rejected(CONFLICT)
acl_policy_delete   id                                    AclDeleted | Rejected(NOT_FOUND|CONFLICT)
acl_token_set       id, hash, description, policies       AclWritten | Rejected(INVALID|CONFLICT)
acl_token_delete    id                                    AclDeleted | Rejected(NOT_FOUND|CONFLICT)
acl_bootstrap       id, hash, description, initial        AclWritten | Rejected(CONFLICT) | Ignored
restore_begin       id, size, sha256, index, term         Restoring
restore_chunk       id, offset, data                      Restoring | Rejected(CONFLICT|INVALID)
restore_commit      id                                    Restored | Rejected(CONFLICT|INVALID)
restore_abort       id, reason                            Ignored
==================  ====================================  ==========================================

TxnOp: [verb, key, value, flags, expected_index]
KVItem: [key, value, flags]
ServiceDef: {id, name, address, port, tags, meta, ttl, checks}
CheckDef: {id, name, kind, target, interval, timeout, ttl, dca}

``apply`` never raises: a command that cannot take effect is a ``Rejected`` result with state
unchanged; bytes that do not decode to a known command are counted in ``apply_errors`` and
answered ``Rejected(MALFORMED)`` (a bug somewhere: builders never produce them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import assert_never

import msgpack

from konsul.errors import BadRequest, NotFound
from konsul.store import snapshot
from konsul.store.acl import AclTable
from konsul.store.catalog import Catalog, not_ttl_message
from konsul.store.kv import KVTable
from konsul.store.restore import PendingRestore
from konsul.store.schema import (
    AclBootstrap,
    AclPolicyDelete,
    AclPolicySet,
    AclTokenDelete,
    AclTokenSet,
    CheckExpire,
    CheckProbe,
    CheckReap,
    CheckSet,
    CheckTTL,
    Command,
    Import,
    KVDelete,
    KVSet,
    RestoreAbort,
    RestoreBegin,
    RestoreChunk,
    RestoreCommit,
    ServiceDeregister,
    ServiceExpire,
    ServiceHeartbeat,
    ServiceRegister,
    Txn,
    reader,
)
from konsul.store.snapshot import Tables
from konsul.store.types import (
    JSON,
    ApplyResult,
    Check,
    Event,
    Ignored,
    Imported,
    KVDeleted,
    KVEntry,
    KVWritten,
    Reason,
    Rejected,
    Restored,
    Restoring,
    Service,
    TxnDone,
)

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = snapshot.FORMAT  # konsul/store/snapshot.py (formats 1 and 2 still load)
EXPORT_VERSION = 1
_RESTORE_COMMANDS = (RestoreBegin, RestoreChunk, RestoreCommit, RestoreAbort)

Listener = Callable[[Event], None]
_TXN_WRITES = frozenset(("set", "cas", "delete", "delete-cas"))


@dataclass(slots=True)
class Touched:
    """What applies changed, for the watchers (``StateMachine.take_touched``)."""

    keys: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # recursive deletes, imports ("")
    names: set[str] = field(default_factory=set)  # service names: instances or their checks
    restored: bool = False  # a snapshot replaced the whole state


class StateMachine:
    """The replicated state: a KV table and a service catalog, plus ``last_applied``.

    Table indices for blocking reads: ``kv_index``, ``services_index``, ``checks_index`` and
    ``catalog_index`` (max of the last two: a service listing shows check status).

    Change hook: append callables to ``listeners``; after each apply that changed the catalog
    each is called with every ``Event`` (in order). They run on the apply path: keep them
    cheap (e.g. put the event on a queue). KV writes emit no events.

    Watchers (``konsul.watch``): while ``watching`` is set, applies note which keys and key
    prefixes they changed (the catalog always notes the service names it changed); the watch
    hub takes them with ``take_touched`` after each applied batch. Off, a write pays nothing.
    """

    def __init__(self) -> None:
        self.kv = KVTable()
        self.catalog = Catalog()
        self.acl = AclTable()
        self.last_applied = 0
        self.apply_errors = 0  # local counter (not replicated state, not in snapshots)
        self.listeners: list[Listener] = []
        self.restoring: PendingRestore | None = None  # an online restore under way
        self.watching = False
        self._touched = Touched()

    # ------------------------------------------------------------------------- apply

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply the command committed at log ``index``; return its result. Never raises.

        An index at or below ``last_applied`` is ignored (``Ignored``): applying an entry twice
        (e.g. replaying a log over a snapshot that already holds it) changes nothing."""
        if index <= self.last_applied:
            return Ignored(f"entry {index} already applied (last_applied {self.last_applied})")
        self.last_applied = index
        try:
            raw = msgpack.unpackb(data)
            read = reader(raw["op"])
        except Exception as exc:  # any garbage must end here, not in the runtime
            self.apply_errors += 1
            log.error("undecodable command at index %d: %r", index, exc)
            return Rejected(Reason.MALFORMED, f"Entry {index} is not a valid command.")
        try:
            cmd = read(raw)
            result = self._dispatch(index, cmd)
        except Exception as exc:  # a forged command of the right op, wrong shape
            self.apply_errors += 1
            log.exception("command at index %d failed to apply", index)
            return Rejected(Reason.MALFORMED, f"Entry {index} could not be applied: {exc!r}.")
        if self.watching:
            self._touch(cmd, result)
        if self.catalog.events:
            self._emit()
        return result

    def advance(self, index: int) -> None:
        """Record that a log entry with no command (no-op, configuration) was applied."""
        if index > self.last_applied:
            self.last_applied = index

    def _emit(self) -> None:
        events = self.catalog.events
        self.catalog.events = []
        for listener in self.listeners:
            for event in events:
                try:
                    listener(event)
                except Exception:  # a listener bug must not break replication
                    log.exception("store listener failed on %r", event)

    def _touch(self, cmd: Command, result: ApplyResult) -> None:
        """Note the keys a KV command changed (refused commands change nothing)."""
        touched = self._touched
        match cmd:
            case KVSet() if type(result) is KVWritten:
                touched.keys.append(cmd.key)
            case KVDelete(recurse=True):
                touched.prefixes.append(cmd.key)
            case KVDelete() if type(result) is KVDeleted:
                touched.keys.append(cmd.key)
            case Txn() if type(result) is TxnDone:
                touched.keys.extend(op.key for op in cmd.ops if op.verb in _TXN_WRITES)
            case Import():
                touched.prefixes.append("")
            case _:
                pass

    def take_touched(self) -> Touched:
        """What was changed since the last call: keys and prefixes (noted while ``watching``),
        service names, and whether a snapshot replaced everything."""
        touched = self._touched
        touched.names = self.catalog.take_touched()
        self._touched = Touched()
        return touched

    def _dispatch(self, index: int, cmd: Command) -> ApplyResult:
        if self.restoring is not None and not isinstance(cmd, _RESTORE_COMMANDS):
            return Rejected(
                Reason.BUSY,
                "A snapshot restore is under way; writes are accepted again when it ends. "
                "Retry shortly.",
            )
        match cmd:
            case KVSet():
                return self.kv.set(index, cmd.key, cmd.value, cmd.flags, cmd.cas)
            case KVDelete(recurse=True):
                return self.kv.delete_prefix(index, cmd.key)
            case KVDelete():
                return self.kv.delete(index, cmd.key, cmd.cas)
            case Txn():
                return self.kv.txn(index, cmd.ops)
            case ServiceRegister():
                return self.catalog.register(index, cmd.service)
            case ServiceDeregister():
                return self.catalog.deregister(index, cmd.id)
            case ServiceHeartbeat():
                return self.catalog.heartbeat(index, cmd.id)
            case CheckTTL():
                return self.catalog.update_check(index, cmd.id, cmd.status, cmd.output, True)
            case CheckSet():
                return self.catalog.update_check(index, cmd.id, cmd.status, cmd.output, False)
            case CheckProbe():
                return self.catalog.probe_result(index, cmd.id, cmd.status, cmd.output, cmd.seen)
            case ServiceExpire():
                return self.catalog.expire_service(index, cmd.id, cmd.seen)
            case CheckExpire():
                return self.catalog.expire_check(index, cmd.id, cmd.seen)
            case CheckReap():
                return self.catalog.reap(index, cmd.id, cmd.seen)
            case Import():
                return self._import(index, cmd)
            case AclPolicySet():
                return self.acl.set_policy(index, cmd.id, cmd.name, cmd.description, cmd.rules)
            case AclPolicyDelete():
                return self.acl.delete_policy(index, cmd.id)
            case AclTokenSet():
                return self.acl.set_token(index, cmd.id, cmd.hash, cmd.description, cmd.policies)
            case AclTokenDelete():
                return self.acl.delete_token(index, cmd.id)
            case AclBootstrap():
                return self.acl.bootstrap(index, cmd.id, cmd.hash, cmd.description, cmd.initial)
            case RestoreBegin():
                self.restoring = PendingRestore(cmd, index)
                return Restoring(cmd.id, 0)
            case RestoreChunk():
                return self._restore_chunk(cmd)
            case RestoreCommit():
                return self._restore_commit(index, cmd.id)
            case RestoreAbort():
                if self.restoring is None or self.restoring.id != cmd.id:
                    return Ignored(f"no restore {cmd.id!r} under way")
                self.restoring = None
                log.warning("restore %s aborted: %s", cmd.id, cmd.reason)
                return Ignored(f"restore {cmd.id!r} aborted")
            case _:
                assert_never(cmd)

    def _import(self, index: int, cmd: Import) -> ApplyResult:
        claimable = {s.id for s in cmd.services}
        # Refuse the whole chunk before touching anything: a chunk is atomic.
        for svc in cmd.services:
            rejected = self.catalog.conflicts(svc, claimable)
            if rejected is not None:
                return rejected
        for key, value, flags in cmd.kv:
            self.kv.put(index, key, value, flags)
        for svc in cmd.services:
            self.catalog.register(index, svc, claimable)
        return Imported(len(cmd.kv), len(cmd.services))

    # ------------------------------------------------------------------------- KV reads

    @property
    def kv_index(self) -> int:
        return self.kv.index

    @property
    def kv_count(self) -> int:
        return len(self.kv)

    def kv_get(self, key: str) -> KVEntry | None:
        return self.kv.get(key)

    def kv_list(self, prefix: str = "", separator: str | None = None) -> list[KVEntry]:
        """Entries under ``prefix`` sorted by key; with ``separator`` only those up to the next
        separator after the prefix (direct children; see ``kv_keys`` for the folder names)."""
        return self.kv.entries(prefix, separator)

    def kv_keys(self, prefix: str = "", separator: str | None = None) -> list[str]:
        """Key names under ``prefix`` sorted; with ``separator`` cut after the next separator
        and deduplicated, like Consul's ``?keys&separator=/``."""
        return self.kv.names(prefix, separator)

    # ------------------------------------------------------------------------- catalog reads

    @property
    def services_index(self) -> int:
        return self.catalog.services_index

    @property
    def checks_index(self) -> int:
        return self.catalog.checks_index

    @property
    def catalog_index(self) -> int:
        return max(self.catalog.services_index, self.catalog.checks_index)

    @property
    def acl_index(self) -> int:
        return self.acl.index

    @property
    def service_count(self) -> int:
        return len(self.catalog.services)

    @property
    def check_count(self) -> int:
        return len(self.catalog.checks)

    def service(self, service_id: str) -> Service | None:
        return self.catalog.services.get(service_id)

    def services(
        self,
        name: str | None = None,
        tags: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
        passing: bool = False,
    ) -> list[Service]:
        """Instances sorted by (name, id): ``name`` exact, every tag in ``tags`` (AND), every
        ``meta`` pair equal, ``passing`` = aggregated status passing only."""
        return self.catalog.select(name, tags, meta, passing)

    def service_names(self) -> list[str]:
        return self.catalog.names()

    def instances(self, name: str, tags: Iterable[str] = (), passing: bool = False
                  ) -> list[Service]:
        """Instances of one service name (empty list if none: the handler answers "not found")."""
        return self.catalog.select(name, tags, None, passing)

    def service_status(self, svc: Service | str) -> str:
        """Aggregated status: critical > warning > passing; no checks = passing."""
        if isinstance(svc, str):
            found = self.catalog.services.get(svc)
            if found is None:
                raise KeyError(svc)
            svc = found
        return self.catalog.status(svc)

    def service_checks(self, svc: Service | str) -> list[Check]:
        """The instance's checks in registration order ([] for an unknown id)."""
        if isinstance(svc, str):
            found = self.catalog.services.get(svc)
            if found is None:
                return []
            svc = found
        return self.catalog.checks_of(svc)

    def service_json(self, svc: Service) -> JSON:
        """An instance as /services lists it: definition, checks with state, status, indices."""
        return svc.to_json(self.catalog.checks_of(svc), self.catalog.status(svc))

    def check(self, check_id: str) -> Check | None:
        return self.catalog.checks.get(check_id)

    def checks(self, service_id: str | None = None) -> list[Check]:
        """All checks sorted by id, or one instance's checks in registration order."""
        if service_id is not None:
            return self.service_checks(service_id)
        checks = self.catalog.checks
        return [checks[c] for c in sorted(checks)]

    def checks_of_name(self, name: str) -> list[Check]:
        """Checks of every instance of a service name (/health/service/<name>), by instance id
        then registration order."""
        out: list[Check] = []
        for svc in self.catalog.select(name):
            out.extend(self.catalog.checks_of(svc))
        return out

    def validate_check_update(self, check_id: str) -> Check:
        """For PUT /health/check/<id>: NotFound for an unknown check, BadRequest for
        a check that is not a TTL check. (Apply re-checks: the answer may change meanwhile.)"""
        chk = self.catalog.checks.get(check_id)
        if chk is None:
            raise NotFound(f"No check with id {check_id!r}.")
        if chk.kind != "ttl":
            raise BadRequest(not_ttl_message(chk))
        return chk

    # ------------------------------------------------------------------------- online restore

    def _open_restore(self, restore_id: str) -> PendingRestore | Rejected:
        pending = self.restoring
        if pending is None or pending.id != restore_id:
            return Rejected(Reason.CONFLICT, f"No restore {restore_id!r} is under way.")
        return pending

    def _restore_chunk(self, cmd: RestoreChunk) -> Restoring | Rejected:
        pending = self._open_restore(cmd.id)
        if isinstance(pending, Rejected):
            return pending
        problem = pending.take(cmd)
        if problem is not None:
            self.restoring = None
            return Rejected(Reason.INVALID, f"The restore was dropped: {problem}.")
        return Restoring(cmd.id, pending.received)

    def _restore_commit(self, index: int, restore_id: str) -> Restored | Rejected:
        pending = self._open_restore(restore_id)
        if isinstance(pending, Rejected):
            return pending
        self.restoring = None
        tables = pending.finish()
        if isinstance(tables, str):
            return Rejected(Reason.INVALID, f"The restore was dropped: {tables}.")
        self._install(tables, index)
        return Restored(restore_id, pending.begin_index, len(self.kv), len(self.catalog.services),
                        len(self.catalog.checks))

    @property
    def restore_pending(self) -> bool:
        """An online restore is open: the runtime takes no snapshot until it ends."""
        return self.restoring is not None

    # ------------------------------------------------------------------------- whole state

    def snapshot(self) -> bytes:
        """The whole replicated state (``konsul.store.snapshot``) in one piece: for tests and
        small states; the runtime streams ``snapshot_chunks``."""
        return b"".join(self.snapshot_chunks())

    def snapshot_chunks(self) -> Iterator[bytes]:
        """Capture the state now, encode it as it is iterated: the pieces of exactly the bytes
        ``snapshot()`` gives at this moment, whatever is applied meanwhile.

        The capture is a pointer copy of the tables (tens of milliseconds for a million keys);
        the encoding (seconds for a million keys) happens piece by piece as the caller iterates,
        which the runtime does in a worker thread while the event loop goes on. Two replicas at
        the same ``last_applied`` produce the same bytes. Never while a restore is open (its
        tables are not part of a snapshot: see ``konsul.store.restore``)."""
        if self.restoring is not None:
            raise RuntimeError("no snapshot while an online restore is under way")
        return snapshot.encode(snapshot.capture(self.kv, self.catalog, self.acl,
                                                self.last_applied))

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises ValueError for bytes that are not a
        snapshot (the runtime then falls back to an older one), leaving the state untouched."""
        self.restore_stream([data])

    def restore_stream(self, pieces: Iterable[bytes]) -> None:
        """``restore`` from the snapshot's bytes in pieces cut anywhere (a file read a block at
        a time): the new tables are built as the pieces arrive, and replace the current ones
        only once the last one is in. An error of the source (a checksum that does not match
        at the end of a file) propagates the same way, with the state untouched."""
        tables = snapshot.load(pieces)
        self._install(tables, tables.last_applied)

    def _install(self, tables: Tables, last_applied: int) -> None:
        self.kv = tables.kv
        self.catalog = tables.catalog
        self.acl = tables.acl
        self.last_applied = last_applied
        self.restoring = None
        self._touched.restored = True
        event = Event("restored", last_applied)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener bug must not break a restore
                log.exception("store listener failed on %r", event)

    def export(self) -> JSON:
        """``{"version": 1, "index", "kv": [...], "services": [...]}`` with only portable fields
        (no per-entry indices, no check state), so that export, import into a fresh node and
        export again give the same document but for ``index``."""
        return {
            "version": EXPORT_VERSION,
            "index": self.last_applied,
            "kv": self.kv.export(),
            "services": self.catalog.export(),
        }
