"""How a container runs. ``PodmanRuntime`` runs the real image with podman (rootful, runc, the
repository's containers.conf) inside the pod's network namespace; ``ProcessRuntime`` is the
fallback where podman cannot run: the container's command as a local process from the
project's venv, in the same namespace. The kubelet says which one it uses in its Node's status.

Containers are labelled with their node, pod and container, and named after them with the
restart count, so a restarted kubelet finds what it started (``adopt``) and `make k8s-down`
removes everything (``remove_everything``)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from e2e.plane import images, names

LABEL = "konsul.plane"   # every container of the plane; value: the node


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


@dataclass
class Launch:
    """Everything one container instance starts with (podspec.py builds it)."""
    name: str                  # unique per instance: kpl_<node>_<pod uid>_<container>_<restart>
    node: str
    pod_uid: str
    container: str
    restart: int
    image: str
    netns: str
    hostname: str
    command: list[str] | None  # the entrypoint, when the pod gives `command`
    args: list[str] | None     # the image's CMD is replaced when the pod gives `args`
    env: dict[str, str]
    workdir: str | None
    mounts: list[Mount]
    user: int | None
    group: int | None
    groups: list[int]
    read_only_root: bool
    privileged: bool
    no_new_privileges: bool
    cap_add: list[str]
    cap_drop: list[str]
    log_path: Path


@dataclass
class Handle:
    id: str
    pid: int
    started_at: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Exit:
    code: int
    finished_at: str
    reason: str = ""

    @property
    def summary(self) -> str:
        return self.reason or ("Completed" if self.code == 0 else "Error")


class Runtime(Protocol):
    kind: str          # "podman" or "process"
    version: str
    fallback: str      # empty, or why podman is not used

    async def image_present(self, image: str) -> bool: ...
    async def image_runs_as_root(self, image: str) -> bool: ...
    async def start(self, launch: Launch) -> Handle: ...
    async def wait(self, handle: Handle) -> Exit: ...
    async def stop(self, handle: Handle, grace: float) -> None: ...
    async def exec(self, handle: Handle, argv: list[str], timeout: float) -> tuple[int, str]: ...
    async def remove(self, handle: Handle) -> None: ...
    async def adopt(self, node: str) -> list[Handle]: ...


async def run(*argv: str, timeout: float = 60, env: dict[str, str] | None = None
              ) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "", f"timed out after {timeout:.0f}s"
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def pid_exit(pid: int) -> None:
    """Resolves when ``pid`` (not our child) exits: a pidfd turns readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


# --- podman -------------------------------------------------------------------------------

# The repository's podman settings and the plane's own image store (images.py).
PODMAN_ENV = images.podman_env()


class PodmanRuntime:
    kind = "podman"
    fallback = ""

    def __init__(self, version: str) -> None:
        self.version = version

    async def podman(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        return await run("podman", *args, timeout=timeout, env=PODMAN_ENV)

    async def image_present(self, image: str) -> bool:
        return (await self.podman("image", "exists", image))[0] == 0

    async def image_runs_as_root(self, image: str) -> bool:
        code, out, _ = await self.podman("image", "inspect", "--format", "{{.Config.User}}", image)
        user = out.strip().split(":")[0]
        return code == 0 and user in ("", "0", "root")

    async def start(self, launch: Launch) -> Handle:
        argv = ["run", "--detach", "--name", launch.name, "--pull=never",
                f"--network=ns:/run/netns/{launch.netns}", f"--hostname={launch.hostname}",
                "--log-driver=k8s-file", f"--log-opt=path={launch.log_path}",
                # Kubernetes gives no tmpfs on a read-only root, and no anonymous volume for an
                # image's VOLUME: what the pod does not mount is the image's own directory.
                "--read-only-tmpfs=false", "--image-volume=ignore",
                f"--label={LABEL}={launch.node}", f"--label=pod-uid={launch.pod_uid}",
                f"--label=container={launch.container}", f"--label=restart={launch.restart}",
                "--stop-timeout=30"]
        if launch.read_only_root:
            argv.append("--read-only")
        if launch.user is not None:
            argv.append(f"--user={launch.user}"
                        + (f":{launch.group}" if launch.group is not None else ""))
        argv += [f"--group-add={g}" for g in launch.groups]
        if launch.privileged:
            argv.append("--privileged")
        if launch.no_new_privileges:
            argv.append("--security-opt=no-new-privileges")
        argv += [f"--cap-drop={c}" for c in launch.cap_drop]
        argv += [f"--cap-add={c}" for c in launch.cap_add]
        if launch.workdir:
            argv.append(f"--workdir={launch.workdir}")
        for mount in launch.mounts:
            argv.append(f"--mount=type=bind,src={mount.source},dst={mount.target}"
                        + (",ro=true" if mount.read_only else ""))
        for key, value in launch.env.items():
            argv.append(f"--env={key}={value}")
        if launch.command is not None:
            argv.append(f"--entrypoint={json.dumps(launch.command)}")
        argv.append(launch.image)
        if launch.args is not None:
            argv += launch.args
        code, out, err = await self.podman(*argv, timeout=120)
        if code != 0:
            await self.podman("rm", "--force", "--volumes", launch.name)
            raise RuntimeError(err.strip() or out.strip())
        return await self._inspect(out.strip())

    async def _inspect(self, ident: str) -> Handle:
        code, out, err = await self.podman("inspect", "--type=container", ident)
        if code != 0:
            raise RuntimeError(err.strip())
        info = json.loads(out)[0]
        return Handle(info["Id"], info["State"]["Pid"], info["State"]["StartedAt"][:19] + "Z",
                      info["Config"].get("Labels") or {})

    async def wait(self, handle: Handle) -> Exit:
        if handle.pid:
            await pid_exit(handle.pid)
        code, out, _ = await self.podman("wait", handle.id, timeout=120)
        exit_code = int(out.strip()) if code == 0 and out.strip().lstrip("-").isdigit() else -1
        _, state, _ = await self.podman("inspect", "--type=container", "--format",
                                        "{{.State.OOMKilled}} {{.State.FinishedAt}}", handle.id)
        oom = state.startswith("true")
        return Exit(exit_code, now(), "OOMKilled" if oom else "")

    async def stop(self, handle: Handle, grace: float) -> None:
        await self.podman("stop", f"--time={max(0, round(grace))}", handle.id,
                          timeout=grace + 60)

    async def exec(self, handle: Handle, argv: list[str], timeout: float) -> tuple[int, str]:
        code, out, err = await self.podman("exec", handle.id, *argv, timeout=timeout)
        return code, out + err

    async def remove(self, handle: Handle) -> None:
        await self.podman("rm", "--force", "--volumes", handle.id)

    async def adopt(self, node: str) -> list[Handle]:
        code, out, _ = await self.podman("ps", "--all", "--quiet", f"--filter=label={LABEL}={node}")
        return [await self._inspect(i) for i in out.split()] if code == 0 else []


# --- the fallback: local processes ------------------------------------------------------------

# The project's image's defaults (the Dockerfile's ENV and CMD), for the process fallback, which
# has no image to read them from.
IMAGE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "KONSUL_HOST": "0.0.0.0",
             "KONSUL_PORT": "8500", "KONSUL_DATA_DIR": "/data"}
IMAGE_CMD = ["konsul"]


class ProcessRuntime:
    """Runs the container's command (or, for the project's image, the image's own command:
    ``konsul``) with the venv's programs first on PATH, under ``ip netns exec`` in the pod's
    namespace, with its volumes bind-mounted in a private mount namespace (procinit.py).
    No image isolation: the root filesystem is the host's, read-only is not enforced."""
    kind = "process"

    def __init__(self, reason: str) -> None:
        self.fallback = reason
        self.version = f"process://{Path(sys.executable).parent.parent}"
        self.children: dict[str, asyncio.subprocess.Process] = {}

    async def image_present(self, image: str) -> bool:
        return True   # the image is the venv

    async def image_runs_as_root(self, image: str) -> bool:
        return False  # the project's image runs as uid 10001

    async def start(self, launch: Launch) -> Handle:
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec = launch.log_path.with_suffix(".launch.json")
        spec.write_text(json.dumps({
            "command": launch.command if launch.command is not None else IMAGE_CMD,
            "args": launch.args or [], "env": {**IMAGE_ENV, **launch.env},
            "workdir": launch.workdir,
            "hostname": launch.hostname, "user": launch.user, "group": launch.group,
            "groups": launch.groups,
            "mounts": [[str(m.source), m.target, m.read_only] for m in launch.mounts],
            "path": str(Path(sys.executable).parent)}))
        with launch.log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", launch.netns, "unshare", "--mount", "--uts",
                "--propagation", "private", sys.executable, "-m", "e2e.plane.kubelet.procinit",
                str(spec), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=names.REPO)
        self.children[launch.name] = proc
        handle = Handle(launch.name, proc.pid, now(), {
            LABEL: launch.node, "pod-uid": launch.pod_uid, "container": launch.container,
            "restart": str(launch.restart)})
        # What a restarted kubelet adopts (the processes outlive it, as containers do).
        launch.log_path.with_suffix(".handle.json").write_text(json.dumps(
            {"id": handle.id, "pid": handle.pid, "started_at": handle.started_at,
             "labels": handle.labels, "since": _start_ticks(proc.pid)}))
        return handle

    async def wait(self, handle: Handle) -> Exit:
        proc = self.children.get(handle.id)
        if proc is None:   # adopted from an earlier kubelet: its exit code is lost
            await pid_exit(handle.pid)
            return Exit(-1, now(), "Unknown")
        code = await proc.wait()
        self.children.pop(handle.id, None)
        return Exit(code if code >= 0 else 128 - code, now())

    async def stop(self, handle: Handle, grace: float) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(handle.pid, sig)
            except ProcessLookupError:
                return
            try:
                await asyncio.wait_for(pid_exit(handle.pid), wait)
                return
            except TimeoutError:
                continue

    async def exec(self, handle: Handle, argv: list[str], timeout: float) -> tuple[int, str]:
        code, out, err = await run("nsenter", "-t", str(handle.pid), "-n", "-m", "-u", "--",
                                   *argv, timeout=timeout)
        return code, out + err

    async def remove(self, handle: Handle) -> None:
        self.children.pop(handle.id, None)

    async def adopt(self, node: str) -> list[Handle]:
        handles = []
        for path in (names.KUBELET_ROOT / node).glob("pods/*/logs/*/*.handle.json"):
            record = json.loads(path.read_text())
            if _start_ticks(record["pid"]) == record["since"]:   # that process, not a reused pid
                handles.append(Handle(record["id"], record["pid"], record["started_at"],
                                      record["labels"]))
        return handles


def _start_ticks(pid: int) -> int:
    """When the process started (clock ticks since boot): unchanged by exec, so it tells a
    pid that was reused from the one we started."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return -1 if fields[0] == "Z" else int(fields[19])


async def choose() -> Runtime:
    """podman when it can run a container here, else the process fallback with the reason.
    KONSUL_PLANE_RUNTIME=process forces the fallback (the plane's tests use it)."""
    if os.environ.get("KONSUL_PLANE_RUNTIME") == "process":
        return ProcessRuntime("KONSUL_PLANE_RUNTIME=process")
    if shutil.which("podman") is None:
        return ProcessRuntime("podman is not installed")
    code, out, err = await run("podman", "version", "--format", "{{.Client.Version}}",
                               env=PODMAN_ENV)
    if code != 0:
        return ProcessRuntime(f"podman does not run: {err.strip()[:200]}")
    code, _, err = await run("podman", "info", env=PODMAN_ENV, timeout=60)
    if code != 0:
        return ProcessRuntime(f"podman info failed: {err.strip()[:200]}")
    return PodmanRuntime(f"podman://{out.strip()}")


def remove_everything() -> list[str]:
    """`make k8s-down`: every container of the plane (and its anonymous volumes)."""
    if shutil.which("podman") is None:
        return []
    env = {**os.environ, **PODMAN_ENV}
    found = subprocess.run(["podman", "ps", "--all", "--quiet", f"--filter=label={LABEL}"],
                           capture_output=True, text=True, env=env, timeout=120).stdout.split()
    if found:
        subprocess.run(["podman", "rm", "--force", "--volumes", "--time=0", *found],
                       capture_output=True, env=env, timeout=300)
    return [f"container {c[:12]}" for c in found]
