"""One worker per Pod bound to this node. Each pass of its loop brings the pod one step
closer to its spec and reports the result in the pod's status; container exits, probe results,
back-off expiries and pod updates wake it.

Lifecycle: namespace + address + /etc files -> volumes -> containers (image present? config
valid? back-off over?) -> probes -> status. Deletion: SIGTERM through the runtime, the grace
period, SIGKILL, namespace removed, then the final DELETE with a uid precondition so that a
StatefulSet can create the pod again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e.plane import hostnet
from e2e.plane.kube import ApiError, Obj
from e2e.plane.kubelet import podspec, volumes
from e2e.plane.kubelet.probes import Probe, check
from e2e.plane.kubelet.runtime import Exit, Handle, now

if TYPE_CHECKING:
    from e2e.plane.kubelet.__main__ import Kubelet

log = logging.getLogger("pods")
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


@dataclass
class Container:
    spec: Obj
    restarts: int = 0
    handle: Handle | None = None
    started_mono: float = 0.0
    exit: Exit | None = None          # the current instance ended (and is not restarted yet)
    exit_started_at: str = ""
    last: Exit | None = None          # the previous instance's end (lastState)
    last_started_at: str = ""
    backoff: float = 0.0
    retry_at: float = 0.0             # no start before this (back-off)
    waiting: tuple[str, str] = ("ContainerCreating", "")
    ready: bool = False
    started: bool = False
    kill_reason: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: Obj, adopted: list[Handle]) -> None:
        self.kubelet, self.pod = kubelet, pod
        self.uid: str = pod["metadata"]["uid"]
        self.dir = kubelet.root / "pods" / self.uid
        self.containers = {c["name"]: Container(c) for c in pod["spec"]["containers"]}
        self.adopted = adopted
        self.wake = asyncio.Event()
        self.gone = False
        self.ip = ""
        self.netns = ""
        self.pod_files: dict[str, Path] = {}
        self.volumes: dict[str, Path] | None = None
        self.volume_error = ""
        self.transitions: dict[str, tuple[str, str]] = {}
        self.start_time = ""
        self.reported: Obj | None = None
        self.next_wake = 0.0

    # --- inputs -------------------------------------------------------------------------------
    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def removed(self) -> None:
        self.gone = True
        self.wake.set()

    @property
    def ref(self) -> str:
        return f"{self.pod['metadata'].get('namespace')}/{self.pod['metadata']['name']}"

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                if await self.step():
                    return
            except Exception:
                log.exception("%s: sync failed", self.ref)
                self.next_wake = time.monotonic() + 2
            timeout = max(0.05, self.next_wake - time.monotonic()) if self.next_wake else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()
            self.next_wake = 0.0

    def wake_at(self, when: float) -> None:
        self.next_wake = min(self.next_wake, when) if self.next_wake else when

    async def step(self) -> bool:
        """One pass; True once the pod is gone and cleaned up."""
        if self.gone:
            await self.kill_all(self.grace(None), "pod removed from the API")
            await self.teardown()
            return True
        meta = self.pod["metadata"]
        if meta.get("deletionTimestamp"):
            await self.kill_all(self.grace(meta.get("deletionGracePeriodSeconds")), "")
            await self.report()
            await self.teardown()
            await self.final_delete()
            return True
        await self.sync()
        await self.report()
        return False

    def grace(self, requested: Any) -> float:
        if requested is not None:
            return float(requested)
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    # --- sync ---------------------------------------------------------------------------------
    async def sync(self) -> None:
        if not self.netns:
            await self.make_sandbox()
        if self.volumes is None:
            try:
                self.volumes = await volumes.prepare(self.kubelet.kube, self.with_ips(),
                                                     self.dir)
                self.volume_error = ""
            except volumes.NotReady as exc:
                self.volume_error = str(exc)
                self.wake_at(time.monotonic() + 2)
                return
        if self.adopted:
            await self.adopt()
        for container in self.containers.values():
            await self.sync_container(container)

    async def make_sandbox(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        ip_file = self.dir / "ip"
        if ip_file.exists():
            self.ip = ip_file.read_text().strip()
        else:
            self.ip = self.kubelet.allocate_ip()
            ip_file.write_text(self.ip)
        self.netns = await asyncio.to_thread(hostnet.create_pod_netns, self.uid,
                                             ipaddress.IPv4Address(self.ip))
        self.pod_files = podspec.write_pod_files(self.pod, self.dir, self.ip)
        self.start_time = self.start_time or now()
        self.transition("PodReadyToStartContainers", "True")

    def with_ips(self) -> Obj:
        """The pod as the downward API sees it: with the addresses we gave it."""
        status = {**self.pod.get("status", {}), "podIP": self.ip, "podIPs": [{"ip": self.ip}],
                  "hostIP": self.kubelet.ip, "hostIPs": [{"ip": self.kubelet.ip}]}
        return {**self.pod, "status": status}

    async def adopt(self) -> None:
        """Containers an earlier kubelet process started for this pod: the newest instance of
        each container is taken over, running or not."""
        newest: dict[str, Handle] = {}
        for handle in self.adopted:
            name = handle.labels.get("container", "")
            if name in self.containers and (
                    name not in newest or int(handle.labels.get("restart", 0))
                    > int(newest[name].labels.get("restart", 0))):
                newest[name] = handle
        self.adopted = []
        for name, handle in newest.items():
            container = self.containers[name]
            container.restarts = int(handle.labels.get("restart", 0))
            container.handle = handle
            container.started_mono = time.monotonic()
            self.watch(container, handle)
            log.info("%s: adopted %s (restart %d)", self.ref, name, container.restarts)

    def should_restart(self, exit: Exit) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and exit.code != 0)

    async def sync_container(self, c: Container) -> None:
        if c.handle is not None:
            return
        if c.exit is not None:
            if not self.should_restart(c.exit):
                return
            if time.monotonic() < c.retry_at:
                c.waiting = ("CrashLoopBackOff", f"back-off {c.backoff:.0f}s restarting failed "
                             f"container={c.name} pod={self.pod['metadata']['name']}_"
                             f"{self.pod['metadata'].get('namespace')}({self.uid})")
                self.wake_at(c.retry_at)
                return
        runtime = self.kubelet.runtime
        image = c.spec["image"]
        if not await runtime.image_present(image):
            c.waiting = ("ErrImageNeverPull", f"Container image \"{image}\" is not present on "
                         "this node, and the local plane never pulls (build it: make image)")
            self.wake_at(time.monotonic() + 5)
            return
        restart = c.restarts + (1 if c.exit is not None else 0)
        log_path = self.dir / "logs" / c.name / f"{restart}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            launch = await podspec.launch(
                self.kubelet.kube, self.kubelet.node, self.with_ips(), c.spec, restart,
                self.netns, self.volumes or {}, self.pod_files, log_path,
                await runtime.image_runs_as_root(image))
        except podspec.ConfigError as exc:
            c.waiting = ("CreateContainerConfigError", str(exc))
            self.wake_at(time.monotonic() + 2)
            return
        try:
            handle = await runtime.start(launch)
        except RuntimeError as exc:
            self.record_exit(c, Exit(128, now(), "StartError"), "")
            c.waiting = ("RunContainerError", str(exc)[:500])
            return
        if c.exit is not None:
            c.last, c.last_started_at, c.exit = c.exit, c.exit_started_at, None
            c.restarts = restart
        c.handle, c.started_mono, c.kill_reason = handle, time.monotonic(), ""
        log.info("%s: started %s (restart %d) as %s", self.ref, c.name, restart, handle.id[:12])
        self.watch(c, handle)

    def watch(self, c: Container, handle: Handle) -> None:
        c.ready = False
        c.started = "startupProbe" not in c.spec
        c.tasks = [asyncio.create_task(self.wait_exit(c, handle))]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in c.spec:
                c.tasks.append(asyncio.create_task(self.probe(c, handle, kind)))
        if "readinessProbe" not in c.spec:
            c.ready = c.started

    async def wait_exit(self, c: Container, handle: Handle) -> None:
        exit = await self.kubelet.runtime.wait(handle)
        if c.handle is not handle:
            return
        for task in c.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.record_exit(c, exit, handle.started_at)
        log.info("%s: %s exited %d %s", self.ref, c.name, exit.code, c.kill_reason)
        self.wake.set()

    def record_exit(self, c: Container, exit: Exit, started_at: str) -> None:
        c.handle, c.ready, c.started = None, False, False
        c.exit, c.exit_started_at = exit, started_at
        ran = time.monotonic() - c.started_mono
        if ran > BACKOFF_RESET:
            c.backoff = 0.0
        # The first restart is immediate, then 10 s, 20 s, ... 300 s, as a kubelet does.
        c.retry_at = time.monotonic() + c.backoff
        c.backoff = min(BACKOFF_MAX, c.backoff * 2 if c.backoff else BACKOFF_START)

    async def probe(self, c: Container, handle: Handle, kind: str) -> None:
        probe = Probe(c.spec[kind])
        successes = failures = 0
        await asyncio.sleep(probe.initial_delay)
        runtime = self.kubelet.runtime

        async def run_exec(argv: list[str], timeout: float) -> tuple[int, str]:
            return await runtime.exec(handle, argv, timeout)

        while c.handle is handle:
            if kind != "startupProbe" and not c.started:
                await asyncio.sleep(0.5)
                continue
            ok, message = await check(probe, self.ip, c.spec, run_exec)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "readinessProbe":
                ready = c.ready
                if successes >= probe.success_threshold:
                    ready = True
                elif failures >= probe.failure_threshold:
                    ready = False
                if ready != c.ready:
                    c.ready = ready
                    self.wake.set()
            elif ok and kind == "startupProbe":
                c.started = True
                if "readinessProbe" not in c.spec:
                    c.ready = True
                self.wake.set()
                return
            elif failures >= probe.failure_threshold:
                what = "Liveness" if kind == "livenessProbe" else "Startup"
                c.kill_reason = f"{what} probe failed: {message}"
                log.info("%s: %s: %s, restarting", self.ref, c.name, c.kill_reason)
                grace = c.spec[kind].get("terminationGracePeriodSeconds")
                await runtime.stop(handle, self.grace(grace))
                return
            await asyncio.sleep(probe.period)

    # --- termination --------------------------------------------------------------------------
    async def kill_all(self, grace: float, reason: str) -> None:
        running = [(c, c.handle) for c in self.containers.values() if c.handle is not None]
        for c, _ in running:
            c.kill_reason = reason
        await asyncio.gather(*(self.kubelet.runtime.stop(h, grace) for _, h in running))
        for c, handle in running:   # wait for the watcher to record the exit
            for _ in range(200):
                if c.handle is not handle:
                    break
                await asyncio.sleep(0.05)

    async def teardown(self) -> None:
        for c in self.containers.values():
            for task in c.tasks:
                task.cancel()
        for handle in await self.kubelet.runtime.adopt(self.kubelet.node):
            if handle.labels.get("pod-uid") == self.uid:
                await self.kubelet.runtime.remove(handle)
        await asyncio.to_thread(hostnet.delete_pod_netns, self.uid)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)
        log.info("%s: torn down", self.ref)

    async def final_delete(self) -> None:
        meta = self.pod["metadata"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        try:
            await self.kubelet.kube.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    # --- status -------------------------------------------------------------------------------
    def transition(self, kind: str, status: str) -> None:
        if self.transitions.get(kind, ("", ""))[0] != status:
            self.transitions[kind] = (status, now())

    def container_status(self, c: Container) -> Obj:
        state: Obj
        if c.handle is not None:
            state = {"running": {"startedAt": c.handle.started_at}}
        elif c.exit is not None and not (self.should_restart(c.exit) and not self.deleting):
            state = {"terminated": self.terminated(c.exit, c.exit_started_at)}
        else:
            reason, message = c.waiting
            if self.volume_error and reason == "ContainerCreating":
                message = self.volume_error
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: Obj = {"name": c.name, "image": c.spec["image"], "imageID": "",
                       "ready": c.ready, "started": c.started, "restartCount": c.restarts,
                       "state": state, "lastState": {}}
        previous = c.exit if "waiting" in state and c.exit else c.last
        previous_start = c.exit_started_at if "waiting" in state and c.exit else c.last_started_at
        if previous is not None:
            status["lastState"] = {"terminated": self.terminated(previous, previous_start)}
        if c.handle is not None:
            status["containerID"] = f"{self.kubelet.runtime.kind}://{c.handle.id}"
        return status

    @staticmethod
    def terminated(exit: Exit, started_at: str) -> Obj:
        return {"exitCode": exit.code, "reason": exit.summary, "finishedAt": exit.finished_at,
                **({"startedAt": started_at} if started_at else {})}

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def phase(self) -> str:
        cs = list(self.containers.values())
        if all(c.exit is not None and (self.deleting or not self.should_restart(c.exit))
               for c in cs):
            return "Succeeded" if all(c.exit and c.exit.code == 0 for c in cs) else "Failed"
        if any(c.handle is not None or c.exit is not None or c.last is not None for c in cs):
            return "Running"
        return "Pending"

    async def report(self) -> None:
        statuses = [self.container_status(c) for c in self.containers.values()]
        all_ready = all(c.ready for c in self.containers.values())
        self.transition("Initialized", "True")
        self.transition("ContainersReady", "True" if all_ready else "False")
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
        existing = {c["type"]: c for c in self.pod.get("status", {}).get("conditions", [])}
        gates_ok = all(existing.get(g, {}).get("status") == "True" for g in gates)
        self.transition("Ready", "True" if all_ready and gates_ok else "False")
        ours = {k: {"type": k, "status": s, "lastTransitionTime": t, "lastProbeTime": None}
                for k, (s, t) in self.transitions.items()}
        for kind, condition in ours.items():
            if condition["status"] == "False" and kind in ("Ready", "ContainersReady"):
                unready = [c.name for c in self.containers.values() if not c.ready]
                condition["reason"] = "ContainersNotReady" if unready else "ReadinessGatesNotReady"
                if unready:
                    condition["message"] = f"containers with unready status: [{' '.join(unready)}]"
        conditions = [c for k, c in existing.items() if k not in ours] + list(ours.values())
        status: Obj = {"phase": self.phase(), "conditions": conditions,
                       "hostIP": self.kubelet.ip, "hostIPs": [{"ip": self.kubelet.ip}],
                       "containerStatuses": statuses}
        if self.ip:
            status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])
        if self.start_time:
            status["startTime"] = self.start_time
        if status == self.reported:
            return
        meta = self.pod["metadata"]
        try:
            await self.kubelet.kube.merge_patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {"status": status})
            self.reported = status
        except ApiError as exc:
            if exc.status != 404:
                raise
