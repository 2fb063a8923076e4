"""Carry out the one step the planner chose: Konsul API calls by pod IP, Kubernetes calls.

``execute`` handles every step class of the planner in one exhaustive ``match`` (a new step
class without a case is a type error), and returns a one-line outcome for the event and
``status.operation``, or raises ``StepFailed`` (the reconcile turns it into a warning event and
a short requeue).
"""

from __future__ import annotations

from typing import Any, assert_never

import aiohttp
from konsul_operator import backups, names, resources, security
from konsul_operator.backups import BackupAction, Idle, PruneJobs, RecordBackup, StartBackup
from konsul_operator.kube import Kube, KubeError
from konsul_operator.observe import NODE_TIMEOUT, Nodes, metrics_accessor
from konsul_operator.planner import (
    Bootstrap,
    CreateMetricsToken,
    DeleteClaims,
    Join,
    Observed,
    RecordBootstrapped,
    RemoveMember,
    RenewCertificate,
    RestartPod,
    ScaleStatefulSet,
    SeedFromBackup,
    Step,
    TransferLeadership,
)
from konsul_operator.resources import Owner
from konsul_operator.spec import ClusterSpec

# A join returns once the new member is promoted (bounded on the node's side); a membership
# change or transfer may take an election timeout or two.
MEMBERSHIP_TIMEOUT = aiohttp.ClientTimeout(total=30)


class StepFailed(Exception):
    pass


async def _call(
    nodes: Nodes,
    obs: Observed,
    pod: str | None,
    method: str,
    path: str,
    body: Any = None,
    timeout: aiohttp.ClientTimeout = MEMBERSHIP_TIMEOUT,
) -> tuple[int, Any]:
    """A request to ``pod``'s node (over TLS and with the management token when the cluster
    has them)."""
    ip = _ip_of(obs, pod)
    try:
        answer = await nodes.call(pod or "", ip, method, path, body, timeout)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise StepFailed(f"{method} {path} on {pod}: {exc!r}") from exc
    return answer.status, answer.body


def _ip_of(obs: Observed, name: str | None) -> str:
    pod = obs.pod(name or "")
    if pod is None or pod.ip is None:
        raise StepFailed(f"no pod IP for {name}")
    return pod.ip


async def execute(
    step: Step, obs: Observed, owner: Owner, spec: ClusterSpec, kube: Kube, nodes: Nodes,
    secrets: security.Security,
) -> str:
    match step:
        case Bootstrap():
            return await _bootstrap(step, obs, nodes)
        case SeedFromBackup():
            assert spec.restore is not None  # (the planner seeds only from spec.restore)
            job = resources.restore_job(owner, spec, spec.restore, step.target,
                                        _ip_of(obs, step.target))
            await _create(kube, job)
            return f"Job {job['metadata']['name']} seeds {step.target} ({step.reason})"
        case RecordBootstrapped():
            return f"cluster already exists ({step.reason}); recorded as bootstrapped"
        case Join():
            return await _join(step, obs, nodes)
        case RemoveMember():
            return await _remove(step, obs, nodes)
        case TransferLeadership():
            return await _transfer(step, obs, nodes)
        case ScaleStatefulSet():
            sts = names.statefulset(owner.name)
            await kube.patch(
                "StatefulSet", owner.namespace, sts, {"spec": {"replicas": step.replicas}}
            )
            return f"StatefulSet scaled to {step.replicas} ({step.reason})"
        case DeleteClaims():
            for claim in step.claims:
                await kube.delete("PersistentVolumeClaim", owner.namespace, claim)
            return f"deleted claims {', '.join(step.claims)}"
        case RestartPod():
            await _check_not_leader(obs, step.target, nodes)
            await kube.delete("Pod", owner.namespace, step.target)
            return f"deleted pod {step.target} to restart it ({step.reason})"
        case RenewCertificate():
            await security.renew_member(kube, owner, secrets, step.target)
            return f"renewed the certificate of {step.target}; it reloads it without a restart"
        case CreateMetricsToken():
            await _metrics_token(obs, owner, nodes, secrets)
            return "created the read-only metrics token (operator:read) Prometheus scrapes with"
        case _:
            assert_never(step)


async def _create(kube: Kube, obj: dict[str, Any]) -> None:
    try:
        await kube.create(obj)
    except KubeError as exc:
        if exc.status != 409:  # (409: made by an earlier reconcile that died before recording)
            raise StepFailed(f"creating {obj['kind']} {obj['metadata']['name']}: {exc}") from exc


async def execute_backup(
    action: BackupAction, obs: Observed, owner: Owner, spec: ClusterSpec, kube: Kube
) -> str:
    """Carry out a backup action (``konsul_operator.backups``); the line for its event."""
    match action:
        case StartBackup():
            assert spec.backup is not None
            members = [(p.name, p.ip) for p in obs.pods
                       if p.ip and not p.deleting and p.node is not None]
            if not members:
                raise StepFailed("no member answers: no address for the backup Job")
            job = resources.backup_job(owner, spec, spec.backup, members,
                                       backups.format_time(action.scheduled),
                                       backups.job_suffix(action))
            await _create(kube, job)
            return f"Job {job['metadata']['name']} takes a backup ({action.reason})"
        case RecordBackup():
            await kube.patch("Job", owner.namespace, action.job.name,
                             {"metadata": {"annotations": {names.RECORDED: "true"}}})
            return _backup_outcome(action.job)
        case PruneJobs():
            for name in action.names:
                await kube.delete("Job", owner.namespace, name)
            return f"deleted finished backup Jobs {', '.join(action.names)}"
        case Idle():
            return action.message
        case _:
            assert_never(action)


def _backup_outcome(job: backups.JobView) -> str:
    report = job.report or {}
    if job.succeeded:
        return (f"backup {report.get('path', '?')}: index {report.get('index', '?')}, "
                f"{report.get('size_bytes', '?')} bytes, {report.get('kv_keys', '?')} key(s); "
                f"{report.get('kept', '?')} kept")
    return f"backup Job {job.name} failed: {job.message}"


async def _bootstrap(step: Bootstrap, obs: Observed, nodes: Nodes) -> str:
    code, body = await _call(nodes, obs, step.target, "POST", "/cluster/bootstrap")
    if code != 200:
        raise StepFailed(f"bootstrap of {step.target} answered {code} {body}")
    return f"bootstrapped {step.target} as a one-voter cluster"


async def _join(step: Join, obs: Observed, nodes: Nodes) -> str:
    payload = {"node_id": step.target, "address": step.address, "http_address": step.http_address}
    code, body = await _call(nodes, obs, obs.leader_id, "POST", "/cluster/join", payload)
    if code != 200:
        raise StepFailed(f"join of {step.target} answered {code} {body}")
    return f"joined {step.target} at {step.address}"


async def _remove(step: RemoveMember, obs: Observed, nodes: Nodes) -> str:
    code, body = await _call(nodes, obs, obs.leader_id, "DELETE",
                             f"/cluster/leave/{step.target}")
    if code not in (200, 404):
        raise StepFailed(f"removing {step.target} answered {code} {body}")
    return f"removed {step.target} from the Raft configuration ({step.reason})"


async def _transfer(step: TransferLeadership, obs: Observed, nodes: Nodes) -> str:
    code, body = await _call(nodes, obs, obs.leader_id, "POST", "/cluster/transfer-leadership",
                             {"node_id": step.to})
    if code != 200:
        raise StepFailed(f"transfer from {step.target} to {step.to}: {code} {body}")
    return f"leadership moved from {step.target} to {step.to} ({step.reason})"


async def _check_not_leader(obs: Observed, target: str, nodes: Nodes) -> None:
    """Re-read the leader just before a delete (it may have moved since the observation)."""
    if len(obs.voters) <= 1:
        return
    for pod in obs.pods:
        if pod.ip is None or pod.name == target or pod.node is None:
            continue
        code, body = await _call(nodes, obs, pod.name, "GET", "/cluster/leader",
                                 timeout=NODE_TIMEOUT)
        if code == 200 and isinstance(body, dict):
            if body.get("leader_id") == target:
                raise StepFailed(f"{target} became the leader again; not deleting it")
            return
    raise StepFailed(f"no node confirmed the leader before deleting {target}")


async def _metrics_token(
    obs: Observed, owner: Owner, nodes: Nodes, secrets: security.Security
) -> None:
    """A policy with operator:read, and a token holding it with the Secret's value."""
    leader, policy = obs.leader_id, names.METRICS_POLICY
    code, body = await _call(nodes, obs, leader, "GET", f"/acl/policy/{policy}")
    if code == 404:
        code, body = await _call(nodes, obs, leader, "POST", "/acl/policy", {
            "name": policy, "description": "Prometheus: /metrics only",
            "rules": {"operator": "read"},
        })
    if code not in (200, 409):
        raise StepFailed(f"creating policy {policy} answered {code} {body}")
    code, body = await _call(nodes, obs, leader, "POST", "/acl/token", {
        "accessor_id": metrics_accessor(owner), "secret_id": secrets.metrics_token,
        "description": "Prometheus ServiceMonitor", "policies": [{"name": policy}],
    })
    if code not in (200, 409):  # 409: it exists already
        raise StepFailed(f"creating the metrics token answered {code} {body}")
