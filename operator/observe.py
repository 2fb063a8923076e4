"""Observe a cluster: its StatefulSet, pods and claims from Kubernetes, and each pod's node over
HTTP by pod IP (``/cluster/status``, ``/health/ready``, then the leader's ``/cluster/peers``).

A secure cluster is called over TLS (the certificate checked against the cluster's CA and the
pod's DNS name, since the operator dials pod IPs) and with the management token (``Nodes``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from konsul_operator import certs, names
from konsul_operator.backups import JobView
from konsul_operator.kube import Kube
from konsul_operator.planner import Member, NodeView, Observed, PodView, RestoreView
from konsul_operator.resources import Owner, backup_labels, restore_digest, selector_labels
from konsul_operator.security import Security
from konsul_operator.spec import HTTP_PORT, TEMPLATE_HASH, ClusterSpec

NODE_TIMEOUT = aiohttp.ClientTimeout(total=2)


@dataclass(frozen=True)
class Snapshot:
    """The planner's input plus the raw objects the actions and status need."""

    observed: Observed
    statefulset: dict[str, Any] | None


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer
    body: Any = None


@dataclass(frozen=True)
class Nodes:
    """How the operator reaches a cluster's nodes: by pod IP, over TLS checked against the
    cluster's CA and the pod's DNS name, with the management token."""

    session: aiohttp.ClientSession
    owner: Owner
    tls: ssl.SSLContext | None = None
    token: str | None = None

    @classmethod
    def of(cls, session: aiohttp.ClientSession, owner: Owner, security: Security) -> Nodes:
        return cls(session, owner, security.context(), security.token)

    def url(self, ip: str) -> str:
        return f"{'https' if self.tls else 'http'}://{ip}:{HTTP_PORT}"

    def _host(self, pod: str) -> str:
        return names.pod_host(self.owner.name, self.owner.namespace, pod)

    async def call(
        self,
        pod: str,
        ip: str,
        method: str,
        path: str,
        body: Any = None,
        timeout: aiohttp.ClientTimeout = NODE_TIMEOUT,
    ) -> Answer:
        """One request; raises ``aiohttp.ClientError`` / ``TimeoutError`` / ``ValueError``."""
        headers = {"X-Konsul-Token": self.token} if self.token else {}
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": self.tls, "server_hostname": self._host(pod)}
        async with self.session.request(method, self.url(ip) + path, json=body, timeout=timeout,
                                        headers=headers, **tls) as resp:
            return Answer(resp.status, await resp.json(content_type=None))

    async def get(self, pod: str, ip: str, path: str) -> Answer:
        try:
            return await self.call(pod, ip, "GET", path)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return Answer(0)

    async def served_serial(self, pod: str, ip: str) -> int | None:
        """The serial of the certificate the node serves now: a handshake of its own, since
        pooled connections keep the certificate they were opened with."""
        if self.tls is None:
            return None
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                ip, HTTP_PORT, ssl=self.tls, server_hostname=self._host(pod),
            ), NODE_TIMEOUT.total)
        except (OSError, TimeoutError):
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        writer.close()
        return certs.served_serial(ssl_object.getpeercert(binary_form=True) if ssl_object else None)


def metrics_accessor(owner: Owner) -> str:
    """The metrics token's accessor id: fixed per cluster, so the operator finds it again."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"konsul.io/{owner.uid or owner.name}/metrics"))


async def node_view(nodes: Nodes, pod: str, ip: str) -> NodeView | None:
    answer = await nodes.get(pod, ip, "/cluster/status")
    status = answer.body
    if answer.status != 200 or not isinstance(status, dict):
        return None
    ready, serial = await asyncio.gather(nodes.get(pod, ip, "/health/ready"),
                                         nodes.served_serial(pod, ip))
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
        ready=ready.status == 200,
        catching_up=status.get("catching_up") is True,
        served_serial=serial,
    )


async def observe(
    kube: Kube,
    nodes: Nodes,
    owner: Owner,
    spec: ClusterSpec,
    desired_hash: str,
    bootstrapped: bool,
    security: Security,
    renew_requested: float | None,
    now: float,
    restore_open: bool = False,
) -> Snapshot:
    """What a reconcile decides from. ``restore_open``: status.restore not yet final, so its Job
    is read even once bootstrapped (its node may hold the state before the Job's pod ends)."""
    sts, pods_raw, claims_raw = await asyncio.gather(
        kube.get("StatefulSet", owner.namespace, names.statefulset(owner.name)),
        kube.list("Pod", owner.namespace, selector_labels(owner)),
        kube.list("PersistentVolumeClaim", owner.namespace, selector_labels(owner)),
    )

    ordinals = [names.pod_ordinal(owner.name, p["metadata"]["name"]) for p in pods_raw]
    pods_raw = [p for p, n in zip(pods_raw, ordinals, strict=True) if n is not None]
    ips = [(p.get("status") or {}).get("podIP") for p in pods_raw]
    views = await asyncio.gather(
        *(node_view(nodes, p["metadata"]["name"], ip) if ip else _none()
          for p, ip in zip(pods_raw, ips, strict=True))
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

    leader_id, members, leader_commit = await _leader_view(nodes, pods)
    restore = None
    if spec.restore is not None and (not bootstrapped or restore_open):
        wanted = names.restore_job(owner.name, restore_digest(spec.restore))
        jobs = await observe_jobs(kube, owner, "restore")
        restore = RestoreView(spec.restore.file, spec.restore.claim_name,
                              next((j for j in jobs if j.name == wanted), None))
    metrics_token = None
    leader = next((p for p in pods if p.name == leader_id), None)
    if spec.acl.enabled and leader is not None and leader.ip is not None:
        found = await nodes.get(leader.name, leader.ip, f"/acl/token/{metrics_accessor(owner)}")
        metrics_token = found.status == 200 if found.status in (200, 404) else None
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
        certificates=tuple(sorted(security.members.values(), key=lambda c: c.pod)),
        renew_before=security.renew_before,
        renew_requested=renew_requested,
        now=now,
        metrics_token=metrics_token,
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
    nodes: Nodes, pods: list[PodView]
) -> tuple[str | None, tuple[Member, ...], int]:
    """Ask the pod that says it leads (re-checked on itself) for the configuration."""
    # A deposed leader may still think it leads for a moment: the highest term wins.
    for pod in sorted(pods, key=lambda p: -(p.node.term if p.node else 0)):
        node = pod.node
        if node is None or node.state != "Leader" or pod.ip is None or pod.deleting:
            continue
        answer = await nodes.get(pod.name, pod.ip, "/cluster/leader")
        body = answer.body
        if answer.status != 200 or not isinstance(body, dict) or (
            body.get("leader_id") != node.node_id
        ):
            continue
        answer = await nodes.get(pod.name, pod.ip, "/cluster/peers")
        peers = answer.body
        if answer.status != 200 or not isinstance(peers, dict):
            continue
        members = tuple(
            Member(id=str(p["id"]), address=str(p["address"]), voter=bool(p["voter"]))
            for p in peers.get("peers") or []
        )
        return node.node_id, members, node.commit_index
    return None, (), 0
