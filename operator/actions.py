"""Carry out the one step the planner chose: Konsul API calls by pod IP, Kubernetes calls.

``execute`` handles every step class of the planner in one exhaustive ``match`` (a new step
class without a case is a type error), and returns a one-line outcome for the event and
``status.operation``, or raises ``StepFailed`` (the reconcile turns it into a warning event and
a short requeue).
"""

from __future__ import annotations

from typing import Any, assert_never

import aiohttp
from konsul_operator import backups, names, resources
from konsul_operator.backups import BackupAction, Idle, PruneJobs, RecordBackup, StartBackup
from konsul_operator.kube import Kube, KubeError
from konsul_operator.observe import NODE_TIMEOUT, node_url
from konsul_operator.planner import (
    Bootstrap,
    DeleteClaims,
    Join,
    Observed,
    RecordBootstrapped,
    RemoveMember,
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
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    timeout: aiohttp.ClientTimeout = MEMBERSHIP_TIMEOUT,
) -> tuple[int, Any]:
    try:
        async with session.request(method, url, json=body, timeout=timeout) as resp:
            return resp.status, await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise StepFailed(f"{method} {url}: {exc!r}") from exc


def _ip_of(obs: Observed, name: str | None) -> str:
    pod = obs.pod(name or "")
    if pod is None or pod.ip is None:
        raise StepFailed(f"no pod IP for {name}")
    return pod.ip


async def execute(
    step: Step, obs: Observed, owner: Owner, spec: ClusterSpec, kube: Kube,
    session: aiohttp.ClientSession,
) -> str:
    match step:
        case Bootstrap():
            return await _bootstrap(step, obs, session)
        case SeedFromBackup():
            assert spec.restore is not None  # (the planner seeds only from spec.restore)
            job = resources.restore_job(owner, spec, spec.restore, _ip_of(obs, step.target))
            await _create(kube, job)
            return f"Job {job['metadata']['name']} seeds {step.target} ({step.reason})"
        case RecordBootstrapped():
            return f"cluster already exists ({step.reason}); recorded as bootstrapped"
        case Join():
            return await _join(step, obs, session)
        case RemoveMember():
            return await _remove(step, obs, session)
        case TransferLeadership():
            return await _transfer(step, obs, session)
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
            await _check_not_leader(obs, step.target, session)
            await kube.delete("Pod", owner.namespace, step.target)
            return f"deleted pod {step.target} to restart it ({step.reason})"
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
            ips = [p.ip for p in obs.pods if p.ip and not p.deleting and p.node is not None]
            if not ips:
                raise StepFailed("no member answers: no address for the backup Job")
            job = resources.backup_job(owner, spec, spec.backup, ips,
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


async def _bootstrap(step: Bootstrap, obs: Observed, session: aiohttp.ClientSession) -> str:
    url = node_url(_ip_of(obs, step.target)) + "/cluster/bootstrap"
    code, body = await _call(session, "POST", url)
    if code != 200:
        raise StepFailed(f"bootstrap of {step.target} answered {code} {body}")
    return f"bootstrapped {step.target} as a one-voter cluster"


async def _join(step: Join, obs: Observed, session: aiohttp.ClientSession) -> str:
    payload = {"node_id": step.target, "address": step.address, "http_address": step.http_address}
    url = node_url(_ip_of(obs, obs.leader_id)) + "/cluster/join"
    code, body = await _call(session, "POST", url, payload)
    if code != 200:
        raise StepFailed(f"join of {step.target} answered {code} {body}")
    return f"joined {step.target} at {step.address}"


async def _remove(step: RemoveMember, obs: Observed, session: aiohttp.ClientSession) -> str:
    url = node_url(_ip_of(obs, obs.leader_id)) + f"/cluster/leave/{step.target}"
    code, body = await _call(session, "DELETE", url)
    if code not in (200, 404):
        raise StepFailed(f"removing {step.target} answered {code} {body}")
    return f"removed {step.target} from the Raft configuration ({step.reason})"


async def _transfer(
    step: TransferLeadership, obs: Observed, session: aiohttp.ClientSession
) -> str:
    url = node_url(_ip_of(obs, obs.leader_id)) + "/cluster/transfer-leadership"
    code, body = await _call(session, "POST", url, {"node_id": step.to})
    if code != 200:
        raise StepFailed(f"transfer from {step.target} to {step.to}: {code} {body}")
    return f"leadership moved from {step.target} to {step.to} ({step.reason})"


async def _check_not_leader(obs: Observed, target: str, session: aiohttp.ClientSession) -> None:
    """Re-read the leader just before a delete (it may have moved since the observation)."""
    if len(obs.voters) <= 1:
        return
    for pod in obs.pods:
        if pod.ip is None or pod.name == target or pod.node is None:
            continue
        code, body = await _call(
            session, "GET", node_url(pod.ip) + "/cluster/leader", timeout=NODE_TIMEOUT
        )
        if code == 200 and isinstance(body, dict):
            if body.get("leader_id") == target:
                raise StepFailed(f"{target} became the leader again; not deleting it")
            return
    raise StepFailed(f"no node confirmed the leader before deleting {target}")
