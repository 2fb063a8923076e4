"""The catalog: service instances and their health checks.

Stored ``Service`` and ``Check`` objects are never mutated once stored: a change stores a new
object. So reads hand out the stored objects themselves (callers must not mutate them), and a
reader holding an old one keeps a consistent picture.

Invariants (checked by the property tests): every check's service exists and lists it; every
service's ``check_ids`` exist and point back at it; ``_by_name`` indexes exactly the services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from konsul.store.schema import CheckDef, ServiceDef
from konsul.store.types import (
    HEARTBEAT_OUTPUT,
    JSON,
    NOT_CHECKED_OUTPUT,
    STATUS_RANK,
    TTL_EXPIRED_OUTPUT,
    TTL_INITIAL_OUTPUT,
    Check,
    CheckWritten,
    Event,
    Ignored,
    Reason,
    Rejected,
    Service,
    ServiceWritten,
)

_SERVICE_ROW = ("id", "name", "address", "port", "tags", "meta", "check_ids", "ttl",
                "create_index", "modify_index", "heartbeat_index")
_CHECK_ROW = ("id", "name", "service_id", "kind", "target", "interval", "timeout", "ttl",
              "deregister_critical_after", "status", "output", "create_index", "modify_index",
              "status_index", "update_index")


def _not_found(what: str, ident: str) -> Rejected:
    return Rejected(Reason.NOT_FOUND, f"No {what} with id {ident!r}.", {"id": ident})


class Catalog:
    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.checks: dict[str, Check] = {}
        self._by_name: dict[str, set[str]] = {}
        self.services_index = 0  # highest index that changed an instance (deregisters included)
        self.checks_index = 0  # highest index that changed a check (status, output, definition)
        self.events: list[Event] = []  # drained by the StateMachine after each apply
        # names whose instances or checks changed, for the watchers (take_touched)
        self._touched: set[str] = set()

    def take_touched(self) -> set[str]:
        """The service names changed since the last call (their instances or checks)."""
        touched, self._touched = self._touched, set()
        return touched

    # ------------------------------------------------------------------------- reads

    def status(self, svc: Service) -> str:
        """Worst status of the instance's checks (critical > warning > passing); an instance
        without checks is passing."""
        worst = "passing"
        rank = 0
        checks = self.checks
        for cid in svc.check_ids:
            status = checks[cid].status
            r = STATUS_RANK[status]
            if r > rank:
                worst, rank = status, r
        return worst

    def checks_of(self, svc: Service) -> list[Check]:
        checks = self.checks
        return [checks[cid] for cid in svc.check_ids]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def select(
        self,
        name: str | None = None,
        tags: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
        passing: bool = False,
    ) -> list[Service]:
        """Instances sorted by (name, id), filtered: name, every tag (AND), every meta pair,
        and with ``passing`` only those whose aggregated status is passing."""
        services = self.services
        if name is not None:
            found = [services[i] for i in sorted(self._by_name.get(name, ()))]
        else:
            found = sorted(services.values(), key=lambda s: (s.name, s.id))
        wanted_tags = list(tags)
        if wanted_tags:
            found = [s for s in found if all(t in s.tags for t in wanted_tags)]
        if meta:
            pairs = list(meta.items())
            found = [s for s in found if all(s.meta.get(k) == v for k, v in pairs)]
        if passing:
            found = [s for s in found if self.status(s) == "passing"]
        return found

    # ------------------------------------------------------------------------- writes

    def conflicts(self, svc: ServiceDef, claimable: set[str]) -> Rejected | None:
        """A check id of ``svc`` that belongs to another service (not one in ``claimable``)."""
        for c in svc.checks:
            owner = self.checks.get(c.id)
            if owner is not None and owner.service_id != svc.id and (
                owner.service_id not in claimable
            ):
                return Rejected(
                    Reason.CONFLICT,
                    f"Check id {c.id!r} already belongs to service {owner.service_id!r}.",
                    {"check_id": c.id, "service_id": owner.service_id},
                )
        return None

    def register(
        self, index: int, svc: ServiceDef, claimable: set[str] | None = None
    ) -> ServiceWritten | Rejected:
        """Upsert an instance (as ``commands.normalize_service`` normalised it).

        Unchanged checks keep their state; a check whose probe (kind, target, ttl) changed starts
        over. Check ids owned by another service are refused, except, within one import chunk,
        ids owned by a service that the same chunk re-registers (``claimable``).
        """
        rejected = self.conflicts(svc, claimable or set())
        if rejected is not None:
            return rejected
        sid = svc.id
        old = self.services.get(sid)
        checks = self.checks
        new_checks: list[Check] = []
        checks_changed = False
        for c in svc.checks:
            chk = self._merge_check(index, sid, c, checks.get(c.id))
            checks_changed = checks_changed or chk is not checks.get(c.id)
            new_checks.append(chk)
        new_ids = tuple(c.id for c in new_checks)
        keep = set(new_ids)
        removed = [cid for cid in old.check_ids if cid not in keep] if old is not None else []
        checks_changed = checks_changed or bool(removed)
        new = Service(
            sid, svc.name, svc.address, svc.port, tuple(svc.tags), dict(svc.meta), new_ids,
            svc.ttl, index if old is None else old.create_index, index, index,
        )
        for cid in removed:
            del checks[cid]
        for chk in new_checks:
            owner = checks.get(chk.id)
            if owner is not None and owner.service_id != sid:
                # Import only: the check moves here from a service the chunk re-registers.
                other = self.services[owner.service_id]
                self._touched.add(other.name)
                self.services[other.id] = replace(
                    other, check_ids=tuple(i for i in other.check_ids if i != chk.id)
                )
            checks[chk.id] = chk
        if old is not None and not checks_changed and _same_service(old, new):
            new.modify_index = old.modify_index
        else:
            self.services_index = index
        if old is not None and old.name != new.name:
            self._unname(old)
            self._touched.add(old.name)
        self._touched.add(new.name)
        self._by_name.setdefault(new.name, set()).add(sid)
        self.services[sid] = new
        if checks_changed:
            self.checks_index = index
        self.events.append(Event("service_registered", index, sid))
        return ServiceWritten(sid, new.modify_index)

    def _merge_check(self, index: int, sid: str, c: CheckDef, prev: Check | None) -> Check:
        if (
            prev is not None
            and prev.service_id == sid
            and prev.kind == c.kind
            and prev.target == c.target
            and prev.ttl == c.ttl
        ):
            if (prev.name, prev.interval, prev.timeout, prev.deregister_critical_after) == (
                c.name, c.interval, c.timeout, c.dca
            ):
                return prev
            return replace(prev, name=c.name, interval=c.interval, timeout=c.timeout,
                           deregister_critical_after=c.dca, modify_index=index)
        output = TTL_INITIAL_OUTPUT if c.kind == "ttl" else NOT_CHECKED_OUTPUT
        create = index if prev is None or prev.service_id != sid else prev.create_index
        return Check(c.id, c.name, sid, c.kind, c.target, c.interval, c.timeout, c.ttl, c.dca,
                     "critical", output, create, index, index, index)

    def deregister(self, index: int, sid: str) -> ServiceWritten | Rejected:
        svc = self.services.pop(sid, None)
        if svc is None:
            return _not_found("service", sid)
        for cid in svc.check_ids:
            del self.checks[cid]
        if svc.check_ids:
            self.checks_index = index
        self._unname(svc)
        self._touched.add(svc.name)
        self.services_index = index
        self.events.append(Event("service_deregistered", index, sid))
        return ServiceWritten(sid, index)

    def _unname(self, svc: Service) -> None:
        ids = self._by_name[svc.name]
        ids.discard(svc.id)
        if not ids:
            del self._by_name[svc.name]

    def heartbeat(self, index: int, sid: str) -> ServiceWritten | Rejected:
        svc = self.services.get(sid)
        if svc is None:
            return _not_found("service", sid)
        self.services[sid] = replace(svc, heartbeat_index=index)
        self._touched.add(svc.name)
        for cid in svc.check_ids:
            chk = self.checks[cid]
            if chk.kind == "ttl":
                self._report(index, chk, "passing", HEARTBEAT_OUTPUT)
        self.events.append(Event("service_heartbeat", index, sid))
        return ServiceWritten(sid, svc.modify_index)

    def _report(self, index: int, chk: Check, status: str, output: str) -> Check:
        self._touched.add(self.services[chk.service_id].name)
        status_changed = chk.status != status
        if status_changed or chk.output != output:
            new = replace(chk, status=status, output=output, modify_index=index,
                          status_index=index if status_changed else chk.status_index,
                          update_index=index)
            self.checks_index = index
        else:
            new = replace(chk, update_index=index)
        self.checks[chk.id] = new
        self.events.append(Event("check_updated", index, chk.service_id, chk.id))
        return new

    def update_check(self, index: int, cid: str, status: str, output: str, ttl_only: bool
                     ) -> CheckWritten | Rejected:
        chk = self.checks.get(cid)
        if chk is None:
            return _not_found("check", cid)
        if ttl_only and chk.kind != "ttl":
            return Rejected(Reason.INVALID, not_ttl_message(chk), {"id": cid})
        new = self._report(index, chk, status, output)
        return CheckWritten(cid, new.status, new.modify_index)

    def probe_result(self, index: int, cid: str, status: str, output: str, seen: int
                     ) -> CheckWritten | Ignored:
        chk = self.checks.get(cid)
        if chk is None or chk.update_index != seen:
            return Ignored(f"check {cid!r} was removed or updated since {seen}")
        new = self._report(index, chk, status, output)
        return CheckWritten(cid, new.status, new.modify_index)

    def expire_service(self, index: int, sid: str, seen: int) -> ServiceWritten | Ignored:
        svc = self.services.get(sid)
        if svc is None or svc.heartbeat_index != seen:
            return Ignored(f"service {sid!r} was deregistered or heartbeat since {seen}")
        result = self.deregister(index, sid)
        assert isinstance(result, ServiceWritten)
        return result

    def expire_check(self, index: int, cid: str, seen: int) -> CheckWritten | Ignored:
        chk = self.checks.get(cid)
        if chk is None or chk.kind != "ttl" or chk.update_index != seen:
            return Ignored(f"check {cid!r} was removed or updated since {seen}")
        new = self._report(index, chk, "critical", TTL_EXPIRED_OUTPUT)
        return CheckWritten(cid, new.status, new.modify_index)

    def reap(self, index: int, cid: str, seen: int) -> ServiceWritten | Ignored:
        chk = self.checks.get(cid)
        if chk is None or chk.status != "critical" or chk.status_index != seen:
            return Ignored(f"check {cid!r} was removed or changed status since {seen}")
        result = self.deregister(index, chk.service_id)
        assert isinstance(result, ServiceWritten)
        return result

    # ------------------------------------------------------------------------- persistence

    def dump(self) -> tuple[list[list[Any]], list[list[Any]]]:
        services = [[getattr(self.services[i], f) for f in _SERVICE_ROW]
                    for i in sorted(self.services)]
        checks = [[getattr(self.checks[i], f) for f in _CHECK_ROW] for i in sorted(self.checks)]
        return services, checks

    def load(self, services: Iterable[Iterable[Any]], checks: Iterable[Iterable[Any]],
             services_index: int, checks_index: int) -> None:
        self.services = {}
        self._by_name = {}
        for row in services:
            svc = Service(*row)
            svc.tags = tuple(svc.tags)
            svc.check_ids = tuple(svc.check_ids)
            svc.meta = dict(svc.meta)
            self.services[svc.id] = svc
            self._by_name.setdefault(svc.name, set()).add(svc.id)
        self.checks = {}
        for row in checks:
            chk = Check(*row)
            self.checks[chk.id] = chk
        self.services_index = services_index
        self.checks_index = checks_index

    def export(self) -> list[JSON]:
        return [self.services[i].definition(self.checks_of(self.services[i]))
                for i in sorted(self.services)]


def not_ttl_message(chk: Check) -> str:
    return (f"Check {chk.id!r} is a {chk.kind} check; only TTL checks accept status updates "
            f"through the API.")


def _same_service(a: Service, b: Service) -> bool:
    return (a.name, a.address, a.port, a.tags, a.meta, a.check_ids, a.ttl) == (
        b.name, b.address, b.port, b.tags, b.meta, b.check_ids, b.ttl)
