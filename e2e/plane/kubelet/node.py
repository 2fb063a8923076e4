"""The Node object: registration, its status (capacity, addresses, conditions, which runtime
runs its pods) and its Lease in kube-node-lease, renewed every quarter of its duration as a
real kubelet does. The controller manager marks the node NotReady when the lease goes stale."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform
import time
from pathlib import Path

from e2e.plane import names
from e2e.plane.kube import ApiError, Kube, Obj
from e2e.plane.kubelet.runtime import Runtime, now

log = logging.getLogger("node")
FALLBACK_CONDITION = "KonsulPlaneProcessFallback"


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def _memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def conditions(runtime: Runtime, heartbeat: str) -> list[Obj]:
    def condition(kind: str, status: str, reason: str, message: str) -> Obj:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat}

    result = [condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available"),
              condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                        "kubelet has no disk pressure"),
              condition("PIDPressure", "False", "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available"),
              condition("Ready", "True", "KubeletReady",
                        f"the local plane's kubelet is posting ready status ({runtime.kind})")]
    if runtime.fallback:
        result.append(condition(FALLBACK_CONDITION, "True", "PodmanUnavailable",
                                "pods run as local processes from the project's venv, not "
                                f"as containers of their image: {runtime.fallback}"))
    return result


def node_object(name: str, ip: str, port: int, runtime: Runtime) -> Obj:
    index = names.node_index(name)
    cidr = f"{names.node_ip(index) - 1}/24"
    stat = os.statvfs(names.STATE)
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_ki()}Ki", "pods": "110",
                "ephemeral-storage": f"{stat.f_blocks * stat.f_frsize // 1024}Ki"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64"},
            "annotations": {"konsul.plane/runtime": runtime.kind}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id", name), "systemUUID": name,
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(), "osImage": _os_image(),
                "containerRuntimeVersion": runtime.version,
                "kubeletVersion": names.versions()["KUBE_VERSION"],
                "operatingSystem": "linux", "architecture": "amd64"},
            "conditions": conditions(runtime, now())}}


async def register(kube: Kube, node: Obj) -> None:
    try:
        await kube.create("/api/v1/nodes", {k: v for k, v in node.items() if k != "status"})
        log.info("registered node %s", node["metadata"]["name"])
    except ApiError as exc:
        if exc.status != 409:
            raise
        await kube.merge_patch(f"/api/v1/nodes/{node['metadata']['name']}",
                               {"metadata": node["metadata"]})
    await kube.merge_patch(f"/api/v1/nodes/{node['metadata']['name']}/status",
                           {"status": node["status"]})


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def keep_lease(kube: Kube, name: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    while True:
        try:
            try:
                await kube.merge_patch(path, {"spec": {"holderIdentity": name,
                                                       "renewTime": _micro_now()}})
            except ApiError as exc:
                if exc.status != 404:
                    raise
                node = await kube.get(f"/api/v1/nodes/{name}")
                await kube.create(path.rsplit("/", 1)[0], {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": name,
                         "uid": node["metadata"]["uid"]}]},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": names.LEASE_SECONDS,
                             "renewTime": _micro_now()}})
        except Exception as exc:
            log.warning("lease renewal failed: %s", exc)
        await asyncio.sleep(names.LEASE_SECONDS / 4)


async def keep_status(kube: Kube, node: Obj, runtime: Runtime) -> None:
    """Post the status again when the API shows other conditions (the controller manager set
    Ready=Unknown while our lease was stale) or once a minute, as a heartbeat."""
    name = node["metadata"]["name"]
    posted = time.monotonic()
    while True:
        await asyncio.sleep(10)
        try:
            current = await kube.get(f"/api/v1/nodes/{name}")
            shown = {c["type"]: c["status"] for c in current["status"].get("conditions", [])}
            wanted = conditions(runtime, now())
            if any(shown.get(c["type"]) != c["status"] for c in wanted) or \
                    time.monotonic() - posted > 60:
                await kube.merge_patch(f"/api/v1/nodes/{name}/status",
                                       {"status": {"conditions": wanted}})
                posted = time.monotonic()
        except Exception as exc:
            log.warning("node status update failed: %s", exc)
