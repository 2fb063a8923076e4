"""Observe a cluster: its StatefulSet, pods and claims from Kubernetes, and each pod's node over
HTTP by pod IP (``/cluster/status``, ``/health/ready``, then the leader's ``/cluster/peers``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from konsul_operator import names
from konsul_operator.backups import JobView
from konsul_operator.kube import Kube
from konsul_operator.planner import Member, NodeView, Observed, PodView, RestoreView
from konsul_operator.resources import Owner, backup_labels, restore_digest, selector_labels
from konsul_operator.spec import HTTP_PORT, TEMPLATE_HASH, ClusterSpec

NODE_TIMEOUT = aiohttp.ClientTimeout(total=2)


@dataclass(frozen=True)
class Snapshot:
    """The planner's input plus the raw objects the actions and status need."""

    observed: Observed
    statefulset: dict[str, Any] | None


def node_url(ip: str) -> str:
    return f"http://{ip}:{HTTP_PORT}"


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    try:
        async with session.get(url, timeout=NODE_TIMEOUT) as resp:
            return resp.status, await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0, None


async def node_view(session: aiohttp.ClientSession, ip: str) -> NodeView | None:
    code, status = await _get_json(session, node_url(ip) + "/cluster/status")
    if code != 200 or not isinstance(status, dict):
        return None
    ready_code, _ = await _get_json(session, node_url(ip) + "/health/ready")
    return NodeView(
        node_id=str(status.get("node_id", "")),
        address=str(status.get("address", "")),
        http_address=str(status.get("http_address") or f"{ip}:{HTTP_PORT}"),
        state=str(status.get("state", "")),
        leader_id=status.get("leader_id"),
        term=int(status.get("term", 0)),
        commit_index=int(status.get("commit_index", 0)),
        applied_index=int(status.get("applied_index", 0)),
        last_index=int(status.get("last_index", 0)),
        peer_count=len(status.get("peers") or []),
        ready=ready_code == 200,
        catching_up=status.get("catching_up") is True,
    )


async def observe(
    kube: Kube,
    session: aiohttp.ClientSession,
    owner: Owner,
    spec: ClusterSpec,
    desired_hash: str,
    bootstrapped: bool,
) -> Snapshot:
    sts, pods_raw, claims_raw = await asyncio.gather(
        kube.get("StatefulSet", owner.namespace, names.statefulset(owner.name)),
        kube.list("Pod", owner.namespace, selector_labels(owner)),
        kube.list("PersistentVolumeClaim", owner.namespace, selector_labels(owner)),
    )

    ordinals = [names.pod_ordinal(owner.name, p["metadata"]["name"]) for p in pods_raw]
    pods_raw = [p for p, n in zip(pods_raw, ordinals, strict=True) if n is not None]
    ips = [(p.get("status") or {}).get("podIP") for p in pods_raw]
    views = await asyncio.gather(
        *(node_view(session, ip) if ip else _none() for ip in ips)
    )
    pods = []
    for raw, ip, node in zip(pods_raw, ips, views, strict=True):
        meta = raw["metadata"]
        pods.append(
            PodView(
                name=meta["name"],
                ordinal=names.pod_ordinal(owner.name, meta["name"]) or 0,
                ip=ip,
                template_hash=(meta.get("annotations") or {}).get(TEMPLATE_HASH, ""),
                deleting=bool(meta.get("deletionTimestamp")),
                node=node,
            )
        )

    leader_id, members, leader_commit = await _leader_view(session, pods)
    restore = None
    if spec.restore is not None and not bootstrapped:
        wanted = names.restore_job(owner.name, restore_digest(spec.restore))
        jobs = await observe_jobs(kube, owner, "restore")
        restore = RestoreView(spec.restore.file, spec.restore.claim_name,
                              next((j for j in jobs if j.name == wanted), None))
    observed = Observed(
        name=owner.name,
        desired_replicas=spec.replicas,
        desired_hash=desired_hash,
        sts_replicas=None if sts is None else int((sts.get("spec") or {}).get("replicas", 0)),
        pods=tuple(sorted(pods, key=lambda p: p.ordinal)),
        members=members,
        leader_id=leader_id,
        leader_commit=leader_commit,
        bootstrapped=bootstrapped,
        claims=tuple(sorted(c["metadata"]["name"] for c in claims_raw)),
        restore=restore,
    )
    return Snapshot(observed, sts)


async def observe_jobs(kube: Kube, owner: Owner, job: str) -> tuple[JobView, ...]:
    """This cluster's backup (or restore) Jobs, with what their pods' termination logs say."""
    selector = backup_labels(owner, job)
    jobs, pods = await asyncio.gather(kube.list("Job", owner.namespace, selector),
                                      kube.list("Pod", owner.namespace, selector))
    logs: dict[str, str] = {}
    for pod in pods:
        job_name = (pod["metadata"].get("labels") or {}).get("job-name", "")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (container.get("state") or {}).get("terminated") or {}
            if ended.get("message"):
                logs[job_name] = str(ended["message"])
    return tuple(_job_view(raw, logs.get(raw["metadata"]["name"], "")) for raw in jobs)


def _job_view(raw: dict[str, Any], log: str) -> JobView:
    meta, status = raw["metadata"], raw.get("status") or {}
    annotations = meta.get("annotations") or {}
    failed_condition = next(
        (c for c in status.get("conditions") or []
         if c.get("type") == "Failed" and c.get("status") == "True"), None)
    succeeded = int(status.get("succeeded") or 0) > 0
    report = None
    try:
        parsed = json.loads(log) if log else None
        report = parsed if isinstance(parsed, dict) else None
    except ValueError:
        pass
    message = log.strip().splitlines()[-1] if log.strip() and report is None else ""
    if failed_condition is not None and not message:
        message = str(failed_condition.get("message") or failed_condition.get("reason") or "")
    return JobView(
        name=meta["name"],
        created=str(meta.get("creationTimestamp") or ""),
        scheduled_at=str(annotations.get(names.SCHEDULED_AT, "")),
        succeeded=succeeded,
        failed=failed_condition is not None and not succeeded,
        recorded=annotations.get(names.RECORDED) == "true",
        report=report,
        message=message,
    )


async def _none() -> None:
    return None


async def _leader_view(
    session: aiohttp.ClientSession, pods: list[PodView]
) -> tuple[str | None, tuple[Member, ...], int]:
    """Ask the pod that says it leads (re-checked on itself) for the configuration."""
    # A deposed leader may still think it leads for a moment: the highest term wins.
    for pod in sorted(pods, key=lambda p: -(p.node.term if p.node else 0)):
        node = pod.node
        if node is None or node.state != "Leader" or pod.ip is None or pod.deleting:
            continue
        code, body = await _get_json(session, node_url(pod.ip) + "/cluster/leader")
        if code != 200 or not isinstance(body, dict) or body.get("leader_id") != node.node_id:
            continue
        code, peers = await _get_json(session, node_url(pod.ip) + "/cluster/peers")
        if code != 200 or not isinstance(peers, dict):
            continue
        members = tuple(
            Member(id=str(p["id"]), address=str(p["address"]), voter=bool(p["voter"]))
            for p in peers.get("peers") or []
        )
        return node.node_id, members, node.commit_index
    return None, (), 0
