"""Carry out the one step the planner chose: Konsul API calls by pod IP, Kubernetes calls.

Each function returns a one-line outcome for the event and ``status.operation``, or raises
``StepFailed`` (the reconcile turns it into a warning event and a short requeue).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from konsul_operator.kube import Kube
from konsul_operator.observe import NODE_TIMEOUT, node_url
from konsul_operator.planner import (
    BOOTSTRAP,
    DELETE_CLAIMS,
    JOIN,
    REMOVE,
    RESTART_POD,
    SCALE_STS,
    TRANSFER,
    Action,
    Observed,
)
from konsul_operator.resources import Owner

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
    action: Action, obs: Observed, owner: Owner, kube: Kube, session: aiohttp.ClientSession
) -> str:
    if action.kind == BOOTSTRAP:
        code, body = await _call(
            session, "POST", node_url(_ip_of(obs, action.target)) + "/cluster/bootstrap"
        )
        if code != 200:
            raise StepFailed(f"bootstrap of {action.target} answered {code} {body}")
        return f"bootstrapped {action.target} as a one-voter cluster"

    if action.kind == JOIN:
        payload = {
            "node_id": action.target,
            "address": action.address,
            "http_address": action.http_address,
        }
        url = node_url(_ip_of(obs, obs.leader_id)) + "/cluster/join"
        code, body = await _call(session, "POST", url, payload)
        if code != 200:
            raise StepFailed(f"join of {action.target} answered {code} {body}")
        return f"joined {action.target} at {action.address}"

    if action.kind == REMOVE:
        url = node_url(_ip_of(obs, obs.leader_id)) + f"/cluster/leave/{action.target}"
        code, body = await _call(session, "DELETE", url)
        if code not in (200, 404):
            raise StepFailed(f"removing {action.target} answered {code} {body}")
        return f"removed {action.target} from the Raft configuration ({action.reason})"

    if action.kind == TRANSFER:
        url = node_url(_ip_of(obs, obs.leader_id)) + "/cluster/transfer-leadership"
        code, body = await _call(session, "POST", url, {"node_id": action.to})
        if code != 200:
            raise StepFailed(f"transfer from {action.target} to {action.to}: {code} {body}")
        return f"leadership moved from {action.target} to {action.to} ({action.reason})"

    if action.kind == SCALE_STS:
        await kube.patch(
            "StatefulSet", owner.namespace, owner.name, {"spec": {"replicas": action.replicas}}
        )
        return f"StatefulSet scaled to {action.replicas} ({action.reason})"

    if action.kind == DELETE_CLAIMS:
        for claim in action.claims:
            await kube.delete("PersistentVolumeClaim", owner.namespace, claim)
        return f"deleted claims {', '.join(action.claims)}"

    if action.kind == RESTART_POD:
        await _check_not_leader(obs, action.target, session)
        await kube.delete("Pod", owner.namespace, action.target)
        return f"deleted pod {action.target} to restart it ({action.reason})"

    raise StepFailed(f"unknown action {action.kind}")


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
