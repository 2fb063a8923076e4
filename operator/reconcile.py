"""One reconcile: make the owned objects exist, observe, plan, take at most one step, and
compute the status to record. The kopf handlers (handlers.py) call ``reconcile``."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from konsul_operator import backups, metrics, names
from konsul_operator.actions import StepFailed, execute, execute_backup
from konsul_operator.kube import Kube, KubeError
from konsul_operator.names import (
    AS_EXPECTED,
    BACKUP_NOW,
    CONVERGED,
    NOT_BOOTSTRAPPED,
    QUORUM_AVAILABLE,
    QUORUM_LOST,
    Condition,
)
from konsul_operator.observe import Nodes, Snapshot, observe, observe_jobs
from konsul_operator.planner import (
    WAIT,
    Bootstrap,
    Converged,
    Observed,
    Plan,
    RecordBootstrapped,
    RenewCertificate,
    Step,
    Wait,
    healthy_voters,
    plan,
    target_of,
)
from konsul_operator.resources import (
    Owner,
    owned_objects,
    pod_template,
    selector_labels,
    selector_string,
)
from konsul_operator.security import Security, SecurityError, ensure
from konsul_operator.spec import (
    RENEW_CERTIFICATES,
    RESTARTED_AT,
    TEMPLATE_HASH,
    ClusterSpec,
    parse_spec,
)

log = logging.getLogger("konsul_operator")

# An event poster: (kind of event "Normal"/"Warning", reason, message).
EventFn = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    step: Step | None  # the step taken, if any
    status: dict[str, Any]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z"
    )


def owner_of(body: dict[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        uid=meta.get("uid", ""),
        restarted_at=(meta.get("annotations") or {}).get(RESTARTED_AT),
    )


def merge_patch(current: Any, desired: Any) -> Any:
    """The RFC 7386 merge patch that turns ``current`` into ``desired`` (None: no change)."""
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return None if current == desired else desired
    patch: dict[str, Any] = {}
    for key in current.keys() - desired.keys():
        patch[key] = None
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
            continue
        sub = merge_patch(current[key], value)
        if sub is not None and sub != {}:
            patch[key] = sub
    return patch or None


def _contains(current: Any, desired: Any) -> bool:
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            _contains(current.get(k), v) for k, v in desired.items()
        )
    return bool(current == desired)


# (namespace, name) -> (fingerprint of the wanted objects, when they were last checked).
_ensured: dict[tuple[str, str], tuple[str, float]] = {}
ENSURE_TTL = 30.0  # re-check unchanged owned objects for drift this often


def _fingerprint(objects: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()


async def ensure_owned(
    kube: Kube, owner: Owner, spec: ClusterSpec, monitoring: bool, event: EventFn
) -> None:
    """Create what is missing; bring drifted objects back (never the StatefulSet's replicas:
    those belong to the planner's steps). Skipped while nothing changed and it was checked in
    the last ENSURE_TTL seconds: most reconciles only observe and wait."""
    wanted = owned_objects(owner, spec, spec.replicas, monitoring)
    key, fingerprint = (owner.namespace, owner.name), _fingerprint(wanted)
    last = _ensured.get(key)
    if last is not None and last[0] == fingerprint and time.monotonic() - last[1] < ENSURE_TTL:
        return
    found = await asyncio.gather(
        *(kube.get(o["kind"], owner.namespace, o["metadata"]["name"]) for o in wanted)
    )
    for obj, current in zip(wanted, found, strict=True):
        kind, name = obj["kind"], obj["metadata"]["name"]
        if current is None:
            await kube.create(obj)
            event("Normal", "Created", f"created {kind} {name}")
            continue
        if kind == "PersistentVolumeClaim":
            continue  # (a claim's spec is mostly immutable: made once, never patched)
        if kind == "StatefulSet":
            retention = obj["spec"]["persistentVolumeClaimRetentionPolicy"]
            if (current.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") != retention:
                await kube.patch(kind, owner.namespace, name,
                                 {"spec": {"persistentVolumeClaimRetentionPolicy": retention}})
            want = obj["spec"]["template"]
            have = (current.get("spec") or {}).get("template") or {}
            have_hash = ((have.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_HASH)
            if have_hash != want["metadata"]["annotations"][TEMPLATE_HASH]:
                change = merge_patch(have, want)
                await kube.patch(kind, owner.namespace, name, {"spec": {"template": change}})
                event("Normal", "TemplateChanged",
                      f"StatefulSet {name} pod template updated; pods restart one at a time")
            continue
        drift = {"metadata": {"labels": obj["metadata"]["labels"]}, "spec": obj["spec"]}
        if not _contains(current, drift):
            await kube.patch(kind, owner.namespace, name, drift)
    _ensured[key] = (fingerprint, time.monotonic())


def _condition(
    previous: list[dict[str, Any]], kind: Condition, status: bool, reason: str, message: str,
    generation: int, now: str,
) -> dict[str, Any]:
    text = "True" if status else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    changed = before is None or before.get("status") != text
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            now if changed or before is None else before.get("lastTransitionTime", now)
        ),
        "observedGeneration": generation,
    }


def conditions(
    previous: list[dict[str, Any]], p: Plan, generation: int, now: str
) -> list[dict[str, Any]]:
    if p.available:
        available_reason = QUORUM_AVAILABLE
    elif p.degraded == QUORUM_LOST:
        available_reason = QUORUM_LOST
    else:
        available_reason = NOT_BOOTSTRAPPED
    return [
        _condition(previous, Condition.AVAILABLE, p.available, available_reason, p.message,
                   generation, now),
        _condition(previous, Condition.PROGRESSING, p.progressing is not None,
                   p.progressing or CONVERGED, p.message, generation, now),
        _condition(previous, Condition.DEGRADED, p.degraded is not None,
                   p.degraded or AS_EXPECTED, p.message if p.degraded else "", generation, now),
    ]


def members_status(obs: Observed) -> list[dict[str, Any]]:
    healthy = healthy_voters(obs)
    out = []
    for member in obs.members:
        pod = obs.pod(member.id)
        out.append({
            "id": member.id,
            "pod": pod.name if pod else "",
            "address": member.address,
            "voter": member.voter,
            "healthy": member.id in healthy,
            "leader": member.id == obs.leader_id,
        })
    return out


def build_status(
    body: dict[str, Any], snap: Snapshot, p: Plan, step: Step | None, outcome: str,
    bootstrapped: bool, now: str,
) -> dict[str, Any]:
    obs = snap.observed
    previous = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    spec = parse_spec(body.get("spec"))
    operation = previous.get("operation") or {}
    if step is not None:
        operation = {"type": step.kind, "target": target_of(step), "message": outcome,
                     "since": now}
    elif isinstance(p.action, Wait) and operation.get("type") != WAIT:
        operation = {"type": WAIT, "target": "", "message": p.message, "since": now}
    elif isinstance(p.action, Wait):
        operation = {**operation, "message": p.message}
    elif isinstance(p.action, Converged):
        operation = {}
    members = members_status(obs)
    healthy = [m for m in members if m["healthy"] and m["voter"]]
    current_image = previous.get("currentImage", "")
    if not p.restart_queue and p.converged:
        current_image = spec.image
    return {
        "phase": p.phase,
        "replicas": len([x for x in obs.pods if not x.deleting]),
        "readyReplicas": len(healthy),
        "selector": selector_string(owner_of(body)),
        "leader": obs.leader_id or "",
        "members": members,
        "memberIds": ",".join(m["id"] for m in members),
        "bootstrapped": bootstrapped,
        "currentImage": current_image,
        "operation": operation or None,
        "restartQueue": list(p.restart_queue),
        "conditions": conditions(previous.get("conditions") or [], p, generation, now),
        "observedGeneration": generation,
        "certificatesNotAfter": _earliest_expiry(obs),
    }


def _earliest_expiry(obs: Observed) -> str | None:
    """When the first member certificate the operator issued expires (renewal comes first)."""
    if not obs.certificates:
        return None
    stamp = min(c.not_after for c in obs.certificates)
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def reconcile(
    body: dict[str, Any], kube: Kube, session: aiohttp.ClientSession, event: EventFn
) -> Outcome:
    started = time.monotonic()
    try:
        outcome = await _reconcile(body, kube, session, event)
    except Exception:
        metrics.RECONCILE_ERRORS.inc()
        metrics.RECONCILES.labels("error").inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels("converged" if outcome.plan.converged else "requeued").inc()
    log.info("reconcile %s in %.2fs: %s %s -> %s", body["metadata"]["name"],
             time.monotonic() - started, outcome.plan.action.kind, target_of(outcome.plan.action),
             outcome.status["operation"]["message"] if outcome.status.get("operation")
             else outcome.plan.message)
    return outcome


async def _reconcile(
    body: dict[str, Any], kube: Kube, session: aiohttp.ClientSession, event: EventFn
) -> Outcome:
    owner = owner_of(body)
    spec = parse_spec(body.get("spec"))
    previous = body.get("status") or {}
    bootstrapped = bool(previous.get("bootstrapped", False))
    monitoring = spec.service_monitor.enabled or spec.prometheus_rule.enabled
    t0 = time.monotonic()
    served = monitoring and await kube.served("monitoring.coreos.com/v1", "servicemonitors")
    secrets = await _secrets(kube, owner, spec, event)  # before the pods that mount them
    await ensure_owned(kube, owner, spec, served, event)

    t1 = time.monotonic()
    desired_hash = pod_template(owner, spec)["metadata"]["annotations"][TEMPLATE_HASH]
    nodes = Nodes.of(session, owner, secrets)
    restore_open = (previous.get("restore") or {}).get("phase") in RESTORE_OPEN
    snap = await observe(kube, nodes, owner, spec, desired_hash, bootstrapped, secrets,
                         _renew_requested(body), time.time(), restore_open)
    if snap.statefulset is None:  # deleted behind our back: recreate it on the next call
        _ensured.pop((owner.namespace, owner.name), None)
    p = plan(snap.observed)
    log.debug("ensure %.2fs, observe %.2fs", t1 - t0, time.monotonic() - t1)

    step: Step | None = None
    outcome = p.message
    if not isinstance(p.action, Wait | Converged):
        step = p.action
        try:
            outcome = await execute(step, snap.observed, owner, spec, kube, nodes, secrets)
        except StepFailed as exc:
            event("Warning", f"{step.kind}Failed", str(exc))
            metrics.STEPS.labels(f"{step.kind}Failed").inc()
            status = build_status(body, snap, p, None, str(exc), bootstrapped, now_iso())
            return Outcome(p, None, status)
        if isinstance(step, Bootstrap | RecordBootstrapped):
            bootstrapped = True
        if isinstance(step, RenewCertificate):
            _secured.pop((owner.namespace, owner.name), None)  # read the new one next time
        metrics.STEPS.labels(step.kind).inc()
        event("Normal", step.kind, outcome)
    elif p.degraded and p.degraded != (_degraded_reason(previous)):
        event("Warning", p.degraded, p.message)

    status = build_status(body, snap, p, step, outcome, bootstrapped, now_iso())
    if spec.backup is not None:
        status["backup"] = await reconcile_backups(body, owner, spec, snap, p, kube, event)
    if spec.restore is not None:
        status["restore"] = restore_status(previous.get("restore"), snap.observed, bootstrapped)
    return Outcome(p, step, status)


RESTORE_OPEN = ("Pending", "Running")  # status.restore phases its Job is still watched in


def restore_status(
    previous: dict[str, Any] | None, obs: Observed, bootstrapped: bool
) -> dict[str, Any]:
    """status.restore: how seeding pod-0 from spec.restore went (kept once bootstrapped and
    final)."""
    view = obs.restore
    if view is None or (bootstrapped and view.job is None):  # what was recorded last stays
        return dict(previous or {})
    job = view.job
    if job is None:
        phase, message = "Pending", "the restore Job is about to be created"
    elif job.failed:
        phase, message = "Failed", job.message
    elif job.succeeded:
        report = job.report or {}
        phase = "Succeeded"
        message = (f"seeded from index {report.get('index', '?')}: "
                   f"{report.get('kv_keys', '?')} key(s), new cluster id "
                   f"{report.get('cluster_id', '?')}")
    else:
        phase, message = "Running", f"{job.name} is running"
    return {"file": view.file, "claimName": view.claim, "job": job.name if job else "",
            "phase": phase, "message": message}


async def reconcile_backups(
    body: dict[str, Any], owner: Owner, spec: ClusterSpec, snap: Snapshot, p: Plan,
    kube: Kube, event: EventFn,
) -> dict[str, Any]:
    """Take at most one backup action (``konsul_operator.backups``); the new status.backup.
    A failure here is recorded and reported, never an error of the whole reconcile."""
    assert spec.backup is not None
    previous = dict((body.get("status") or {}).get("backup") or {})
    now = datetime.datetime.now(datetime.UTC)
    created = backups.parse_time(body["metadata"].get("creationTimestamp")) or now
    trigger = (body["metadata"].get("annotations") or {}).get(BACKUP_NOW, "")
    labels = (owner.namespace, owner.name)
    try:
        jobs = await observe_jobs(kube, owner, "backup")
        action = backups.plan_backup(
            spec.backup.schedule, spec.backup.suspend, backups.BackupState.from_status(previous),
            jobs, trigger, p.available, created, now)
        outcome = await execute_backup(action, snap.observed, owner, spec, kube)
        interval = backups.interval_seconds(spec.backup.schedule, now)
    except (backups.BadSchedule, StepFailed, KubeError) as exc:
        event("Warning", "BackupFailed", str(exc))
        return {**previous, "lastFailure": {"time": backups.format_time(now), "job": "",
                                            "message": str(exc)}}
    status = _backup_status(previous, action, outcome, jobs, now, owner.name)
    if not isinstance(action, backups.Idle | backups.PruneJobs):
        failed = isinstance(action, backups.RecordBackup) and not action.job.succeeded
        event("Warning" if failed else "Normal", _event_reason(action), outcome)
    if isinstance(action, backups.RecordBackup):
        metrics.BACKUPS.labels(*labels, "succeeded" if action.job.succeeded else "failed").inc()
    last = backups.parse_time(status.get("lastSuccessTime")) or created
    metrics.BACKUP_LAST_SUCCESS.labels(*labels).set(last.timestamp())
    metrics.BACKUP_INTERVAL.labels(*labels).set(interval)
    size = (status.get("lastBackup") or {}).get("sizeBytes")
    if size is not None:
        metrics.BACKUP_SIZE.labels(*labels).set(size)
    return status


def _event_reason(action: backups.BackupAction) -> str:
    if isinstance(action, backups.RecordBackup):
        return "BackupSucceeded" if action.job.succeeded else "BackupFailed"
    return "BackupStarted"


def _backup_status(
    previous: dict[str, Any], action: backups.BackupAction, outcome: str,
    jobs: tuple[backups.JobView, ...], now: datetime.datetime, cluster: str,
) -> dict[str, Any]:
    status = dict(previous)
    stamp = backups.format_time(now)
    match action:
        case backups.StartBackup():
            if action.due is not None:
                status["lastScheduleTime"] = backups.format_time(action.due)
            if action.trigger:
                status["lastTrigger"] = action.trigger
            status["message"] = outcome
        case backups.RecordBackup(job=job) if job.succeeded:
            report = job.report or {}
            status["lastSuccessTime"] = stamp
            status["lastBackup"] = {
                "job": job.name, "file": str(report.get("path", "")),
                "index": int(report.get("index", 0)), "term": int(report.get("term", 0)),
                "sizeBytes": int(report.get("size_bytes", 0)),
                "kvKeys": int(report.get("kv_keys", 0)),
                "services": int(report.get("services", 0)), "time": stamp,
            }
            status["backupsKept"] = int(report.get("kept", 0))
            status["message"] = outcome
        case backups.RecordBackup(job=job):
            status["lastFailure"] = {"time": stamp, "job": job.name, "message": job.message}
            status["message"] = outcome
        case backups.Idle():
            status["message"] = action.message
            if action.next_at is not None:
                status["nextScheduleTime"] = backups.format_time(action.next_at)
        case backups.PruneJobs():
            pass
    running = [j.name for j in jobs if not j.finished]
    if isinstance(action, backups.StartBackup):
        running.append(names.backup_job(cluster, backups.job_suffix(action)))
    status["active"] = running[0] if running else ""
    return status


# (namespace, name) -> (what the Secrets were made for, what was read, when). Secrets change
# rarely and mostly through the operator itself (which forgets the entry when it renews): most
# reconciles only observe.
_secured: dict[tuple[str, str], tuple[tuple[Any, ...], Security, float]] = {}
SECRETS_TTL = 30.0


async def _secrets(kube: Kube, owner: Owner, spec: ClusterSpec, event: EventFn) -> Security:
    """The cluster's Secrets, made if missing, with a certificate for every ordinal below
    ``spec.replicas`` (issued before the StatefulSet grows; certificates of members scaled away
    stay, unused)."""
    key, wanted = (owner.namespace, owner.name), (spec.replicas, spec.tls, spec.acl)
    cached = _secured.get(key)
    if cached is not None and cached[0] == wanted and time.monotonic() - cached[2] < SECRETS_TTL:
        return cached[1]
    try:
        security = await ensure(kube, owner, spec, spec.replicas, event)
    except SecurityError as exc:
        event("Warning", "SecretInvalid", str(exc))
        raise
    _secured[key] = (wanted, security, time.monotonic())
    return security


def _renew_requested(body: dict[str, Any]) -> float | None:
    """The konsul.io/renewCertificates annotation as a time (None: absent or unreadable)."""
    raw = (body["metadata"].get("annotations") or {}).get(RENEW_CERTIFICATES)
    if not raw:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _degraded_reason(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == Condition.DEGRADED and cond.get("status") == "True":
            return str(cond.get("reason"))
    return None


__all__ = ["Outcome", "ensure_owned", "reconcile", "selector_labels"]
