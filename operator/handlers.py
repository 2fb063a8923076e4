"""kopf handlers: every entry point (create, update, resume, timer) runs the same reconcile.

Handlers of one object are serialised by kopf, but a timer runs beside them, so a per-object
lock keeps two reconciles of one cluster from ever taking steps at the same time. Nothing
sleeps inside a handler: an unfinished cluster raises ``kopf.TemporaryError`` to be called again.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import kopf
from konsul_operator import names
from konsul_operator.events import Recorder, post
from konsul_operator.kube import Kube, load_connection
from konsul_operator.planner import target_of
from konsul_operator.reconcile import Outcome, reconcile
from konsul_operator.resources import Owner, selector_labels
from konsul_operator.spec import GROUP, PLURAL, VERSION, parse_spec

# Seconds between timer reconciles, and before a requeued reconcile (tests shorten both).
INTERVAL = float(os.environ.get("KONSUL_OPERATOR_INTERVAL", "15"))
REQUEUE = float(os.environ.get("KONSUL_OPERATOR_REQUEUE", "2"))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and diff-base in annotations of our own prefix; status holds only our fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="konsul.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="konsul.io", key="last-handled-configuration"
    )
    # Events are posted by the operator itself (events.py), one per step: kopf would add one
    # per log line of its own (each timer run, each requeue).
    settings.posting.enabled = False
    # A timer busy in a reconcile when the cluster is deleted finishes it; re-check for that
    # every 2s rather than kopf's default 60s, so the deletion is not held up for a minute.
    settings.background.cancellation_polling = 2
    # Namespace/CRD scanning is only needed for namespace patterns; off by request (an API
    # emulator, or RBAC without namespace list).
    if os.environ.get("KONSUL_OPERATOR_SCANNING", "true").lower() == "false":
        settings.scanning.disabled = True
    memo["kube"] = Kube(load_connection())
    memo["session"] = aiohttp.ClientSession()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo["kube"].close()
    await memo["session"].close()


async def _run(body: kopf.Body, memo: kopf.Memo) -> Outcome | None:
    if body.metadata.get("deletionTimestamp"):
        return None
    lock = memo.get("lock")
    if lock is None:
        lock = memo["lock"] = asyncio.Lock()
    async with lock:
        # Level-triggered on the newest state: the body kopf hands over may predate our own
        # last status patch (or a spec change still in its queue).
        kube: Kube = memo["kube"]
        fresh = await kube.get("KonsulCluster", str(body.metadata.namespace),
                               str(body.metadata.name))
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return None
        recorder = Recorder()
        try:
            outcome = await reconcile(fresh, kube, memo["session"], recorder)
        finally:
            await recorder.flush(kube, fresh)
        # Written inside the lock, so the next reconcile reads what this one decided.
        await kube.patch_status("KonsulCluster", str(body.metadata.namespace),
                                str(body.metadata.name), outcome.status)
    return outcome


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def on_change(
    body: kopf.Body, memo: kopf.Memo, reason: str, retry: int, old: Any, **_: Any
) -> None:
    replicas = parse_spec(body.get("spec")).replicas
    old_replicas = ((old or {}).get("spec") or {}).get("replicas")
    changed = reason == "create" or (reason == "update" and old_replicas != replicas)
    if replicas % 2 == 0 and retry == 0 and changed:
        await post(memo["kube"], body, "Warning", "EvenReplicas",
                   f"{replicas} replicas tolerate as many failures as {replicas - 1}: "
                   "an odd number is recommended")
    outcome = await _run(body, memo)
    if outcome is not None and not outcome.plan.converged:
        action = outcome.plan.action
        # Soon after a step or while work is under way; at the timer's pace while it can only
        # wait for pods to come back (quorum lost, a member down).
        busy = outcome.step is not None or outcome.plan.progressing is not None
        raise kopf.TemporaryError(
            outcome.plan.message or f"took step {action.kind} {target_of(action)}",
            delay=REQUEUE if busy else INTERVAL,
        )


@kopf.timer(GROUP, VERSION, PLURAL, interval=INTERVAL, initial_delay=INTERVAL)
async def on_timer(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # Level-triggered safety net: pods crash and come back without touching the resource.
    await _run(body, memo)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete what the cluster owns (owner references would let the garbage collector do it;
    doing it here also covers clusters without one), and the PVCs only when asked."""
    meta = body.metadata
    owner = Owner(name=str(meta.name), namespace=str(meta.namespace), uid=str(meta.uid))
    kube: Kube = memo["kube"]
    # Wait for a reconcile in flight (it could otherwise recreate what is deleted here); the
    # next ones see the deletionTimestamp and stop.
    lock = memo.get("lock")
    if lock is None:
        lock = memo["lock"] = asyncio.Lock()
    async with lock:
        await _delete_owned(body, owner, kube)


async def _delete_owned(body: kopf.Body, owner: Owner, kube: Kube) -> None:
    spec = parse_spec(body.get("spec"))
    cluster = owner.name
    owned = [
        ("PrometheusRule", names.prometheus_rule(cluster)),
        ("ServiceMonitor", names.service_monitor(cluster)),
        ("StatefulSet", names.statefulset(cluster)),
        ("PodDisruptionBudget", names.disruption_budget(cluster)),
        ("Service", names.client_service(cluster)),
        ("Service", names.headless_service(cluster)),
        ("Secret", names.tls_secret(cluster)),
        ("Secret", names.ca_secret(cluster)),
        ("Secret", names.management_token_secret(cluster)),
        ("Secret", names.metrics_token_secret(cluster)),
    ]
    for kind, name in owned:
        if kind in ("PrometheusRule", "ServiceMonitor") and not (
            spec.service_monitor.enabled or spec.prometheus_rule.enabled
        ):
            continue
        if await kube.delete(kind, owner.namespace, name):
            await post(kube, body, "Normal", "Deleted", f"deleted {kind} {name}")
    if spec.delete_claims_on_delete:
        for claim in await kube.list("PersistentVolumeClaim", owner.namespace,
                                     selector_labels(owner)):
            claim_name = claim["metadata"]["name"]
            await kube.delete("PersistentVolumeClaim", owner.namespace, claim_name)
            await post(kube, body, "Normal", "Deleted", f"deleted claim {claim_name}")
