"""kopf handlers: every entry point (create, update, resume, and a periodic tick) runs the same
reconcile.

A lock per cluster keeps two reconciles of one cluster from ever taking steps at the same time
(kopf serialises the handlers of one object, but the tick runs beside them). Nothing sleeps
inside a handler: an unfinished cluster raises ``kopf.TemporaryError`` to be called again.

The operator puts no finalizer on a KonsulCluster: everything it makes carries an owner
reference, so the garbage collector deletes it with the cluster, and the claims go or stay by
the StatefulSet's retention policy (``storage.deleteClaimsOnDelete``). Deleting a cluster thus
never waits for the operator, which may be gone first (`helm uninstall` removes both at once).
That is also why the periodic reconcile is a task of our own and not a kopf timer: kopf holds a
finalizer on every object a timer runs for.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
import kopf
from konsul_operator.events import Recorder, post
from konsul_operator.kube import Kube, KubeError, load_connection
from konsul_operator.planner import target_of
from konsul_operator.reconcile import Outcome, reconcile
from konsul_operator.spec import GROUP, PLURAL, VERSION, parse_spec

log = logging.getLogger("konsul_operator")

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
    # Namespace/CRD scanning is only needed for namespace patterns; off by request (an API
    # emulator, or RBAC without namespace list).
    if os.environ.get("KONSUL_OPERATOR_SCANNING", "true").lower() == "false":
        settings.scanning.disabled = True
    memo["kube"] = Kube(load_connection())
    memo["session"] = aiohttp.ClientSession()
    memo["locks"] = {}
    memo["ticker"] = asyncio.create_task(tick(memo))


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo["ticker"].cancel()
    await memo["kube"].close()
    await memo["session"].close()


def _lock(memo: kopf.Memo, namespace: str, name: str) -> asyncio.Lock:
    # memo["locks"] is made at startup; kopf's per-object memos are shallow copies sharing it.
    locks: dict[tuple[str, str], asyncio.Lock] = memo["locks"]
    return locks.setdefault((namespace, name), asyncio.Lock())


async def _run(namespace: str, name: str, memo: kopf.Memo) -> Outcome | None:
    async with _lock(memo, namespace, name):
        # Level-triggered on the newest state: the body kopf hands over may predate our own
        # last status patch (or a spec change still in its queue).
        kube: Kube = memo["kube"]
        fresh = await kube.get("KonsulCluster", namespace, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return None
        recorder = Recorder()
        try:
            outcome = await reconcile(fresh, kube, memo["session"], recorder)
        finally:
            await recorder.flush(kube, fresh)
        # Written inside the lock, so the next reconcile reads what this one decided.
        await kube.patch_status("KonsulCluster", namespace, name, outcome.status)
    return outcome


async def tick(memo: kopf.Memo) -> None:
    """Every INTERVAL, a reconcile of every cluster in scope: pods crash and come back
    without touching the resource, so this is the level-triggered safety net."""
    kube: Kube = memo["kube"]
    while True:
        await asyncio.sleep(INTERVAL)
        for namespace in memo["namespaces"] or [None]:
            try:
                clusters = await kube.list("KonsulCluster", namespace, {})
            except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("periodic reconcile: listing clusters failed: %s", exc)
                continue
            for body in clusters:
                meta = body["metadata"]
                try:
                    await _run(meta["namespace"], meta["name"], memo)
                except Exception:  # one cluster's failure must not stop the others' ticks
                    log.exception("periodic reconcile of %s/%s", meta["namespace"],
                                  meta["name"])


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
    outcome = await _run(str(body.metadata.namespace), str(body.metadata.name), memo)
    if outcome is not None and not outcome.plan.converged:
        action = outcome.plan.action
        # Soon after a step or while work is under way; at the timer's pace while it can only
        # wait for pods to come back (quorum lost, a member down).
        busy = outcome.step is not None or outcome.plan.progressing is not None
        raise kopf.TemporaryError(
            outcome.plan.message or f"took step {action.kind} {target_of(action)}",
            delay=REQUEUE if busy else INTERVAL,
        )
