"""The real operator against kmock, with this harness playing kubelet + StatefulSet controller.

- ``Emulator``: kmock's KubernetesEmulator on a loopback port, in a process of its own, with
  the kinds the operator uses declared (kopf needs namespaces and CRDs declared to start).
- ``StatefulSetController``: for each StatefulSet ordinal it creates the Pod object and starts a
  **real ``konsul`` process** on its own loopback address ``<prefix>.<ordinal+1>`` with the
  guide's ports (HTTP 8500, Raft 7000); readiness on the Pod follows the node's
  ``/health/ready``; a deleted Pod stops its process (SIGTERM) and is recreated from the current
  template; a crashed process is restarted like kubelet would; a PVC object per ordinal stands
  for a data directory (a new PVC is an empty directory). It also plays the garbage collector
  for pods of a deleted StatefulSet and for the StatefulSet of a deleted KonsulCluster (its
  claims too, by the set's ``persistentVolumeClaimRetentionPolicy``). Like a kubelet, it
  projects the pod's Secret volumes into files (a pod waits until its Secrets exist) and keeps
  them in sync, swapping a ``..data`` symlink as the kubelet does, so a renewed certificate
  reaches the node in place.
- ``JobController``: runs each Job's container command (``konsulctl``, for backups and
  restores) as a local process, its volumes mapped to the claims' directories and its
  termination log to a file; records the outcome on a Pod object and the Job's status.
- ``OperatorProcess``: ``python -m konsul_operator`` as a subprocess, pointed at the emulator by
  a kubeconfig.

Pod DNS: each process resolves ``<pod>.<headless>.<ns>.svc`` (and its longer and shorter forms)
to the pod IPs from a hosts file the harness keeps, as the cluster's DNS would
(``pod_site/sitecustomize.py``); so the advertise addresses and the certificates' names are the
operator's own. The
one liberty taken with the pod's configuration: HTTP and Raft bind to the pod IP instead of
0.0.0.0 (a pod's own network namespace would make 0.0.0.0 unique). Everything else comes from the
StatefulSet's template as the operator wrote it (fieldRefs and ``$(VAR)`` expanded, Secret
volumes at their mount paths).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.processes import REPO, free_port, http

POD_SITE = Path(__file__).parent / "pod_site"  # sitecustomize.py: pod DNS for node processes

NS = "default"
RESOURCES: dict[str, tuple[str, bool, set[str]]] = {
    # path: (kind, namespaced, subresources)
    "v1/namespaces": ("Namespace", False, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False,
                                                          set()),
    "konsul.io/v1alpha1/konsulclusters": ("KonsulCluster", True, {"status", "scale"}),
    "apps/v1/statefulsets": ("StatefulSet", True, {"status", "scale"}),
    "batch/v1/jobs": ("Job", True, {"status"}),
    "v1/pods": ("Pod", True, {"status"}),
    "v1/services": ("Service", True, set()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, set()),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, set()),
    "v1/events": ("Event", True, set()),
    "v1/secrets": ("Secret", True, set()),
    # Served, so the operator creates the monitoring objects a cluster asks for.
    "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", True, set()),
    "monitoring.coreos.com/v1/prometheusrules": ("PrometheusRule", True, set()),
}
API_PATHS = {
    "KonsulCluster": "/apis/konsul.io/v1alpha1",
    "StatefulSet": "/apis/apps/v1",
    "Job": "/apis/batch/v1",
    "PodDisruptionBudget": "/apis/policy/v1",
    "Pod": "/api/v1",
    "Service": "/api/v1",
    "PersistentVolumeClaim": "/api/v1",
    "Event": "/api/v1",
    "ServiceMonitor": "/apis/monitoring.coreos.com/v1",
    "PrometheusRule": "/apis/monitoring.coreos.com/v1",
    "Secret": "/api/v1",
}
PLURALS = {
    "KonsulCluster": "konsulclusters", "StatefulSet": "statefulsets", "Job": "jobs",
    "PodDisruptionBudget": "poddisruptionbudgets", "Pod": "pods", "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims", "Event": "events",
    "ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules",
    "Secret": "secrets",
}


# --------------------------------------------------------------------------- the API server


class Emulator:
    """kmock in a process of its own (so the test's threads — this harness, write loads —
    do not share a GIL with it), answering on a loopback port."""

    def __init__(self) -> None:
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Emulator:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.operator.harness"], cwd=REPO,
            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"kmock did not start: {self.url!r}")
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


    # ---------------------------------------------------------------- a tiny sync client

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def path(self, kind: str, name: str | None = None) -> str:
        base = f"{API_PATHS[kind]}/namespaces/{NS}/{PLURALS[kind]}"
        return f"{base}/{name}" if name else base

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        code, body = self.request("GET", self.path(kind, name))
        return body if code == 200 else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        code, body = self.request("GET", self.path(kind))
        return list(body.get("items") or []) if code == 200 else []

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", NS)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("resourceVersion", "1")  # kopf's finalizer JSON-patch tests it
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        code, body = self.request("POST", self.path(obj["kind"]), obj)
        assert code in (200, 201), f"create {obj['kind']} -> {code} {body}"
        return dict(body)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        code, out = self.request("PATCH", self.path(kind, name), body,
                                 "application/merge-patch+json")
        return out if code == 200 else None

    def delete(self, kind: str, name: str) -> bool:
        code, _ = self.request("DELETE", self.path(kind, name))
        return code == 200


async def serve_emulator() -> None:
    """The emulator process: print the URL, serve until stdin closes (the test ended)."""
    from kmock import ResourceInfo, Server

    async with _emulator_class()() as kmock, Server(kmock) as server:
        for path, (kind, namespaced, subresources) in RESOURCES.items():
            kmock.resources[path] = ResourceInfo(
                kind=kind, namespaced=namespaced, subresources=subresources,
                verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
                shortnames={"kc"} if kind == "KonsulCluster" else set(),
            )
        print(str(server.url).rstrip("/"), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _emulator_class() -> Any:
    """kmock's emulator plus what a real API server does and kopf relies on:

    - ``metadata.generateName`` (kopf names its Events that way; without it every Event after
      the first is a 409);
    - a ``resourceVersion`` that changes on every write: kopf matches the version its own patch
      returned against the watch stream, and with a constant one it takes an older body for the
      newest, re-running finished handlers;
    - ``generation`` bumped by spec changes (for ``observedGeneration``).

    kopf's finalizer JSON-patch carries a ``test`` of the resourceVersion it last saw; a real API
    server answers 422 on a mismatch and kopf refetches, kmock answers 500 and kopf retries the
    same patch until it gives up. Such tests are dropped here (the operator itself never relies
    on them: it reads the resource afresh on each reconcile).
    """
    import itertools

    from kmock import KubernetesEmulator, action

    versions = itertools.count(2)

    class Emulator(KubernetesEmulator):  # type: ignore[misc]
        async def _handle(self, request: Any) -> Any:
            data = request.data
            version = str(next(versions))
            if isinstance(data, dict) and request.action in (action.CREATE, action.UPDATE):
                meta = data.setdefault("metadata", {})
                if (request.action == action.CREATE and not meta.get("name")
                        and meta.get("generateName")):
                    meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:8]}"
                meta["resourceVersion"] = version
                if request.action == action.UPDATE and "spec" in data and not request.subresource:
                    meta["generation"] = self._generation(request) + 1
            elif isinstance(data, list) and request.action == action.UPDATE:
                data[:] = [op for op in data if not (
                    op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion")]
                data.append({"op": "replace", "path": "/metadata/resourceVersion",
                             "value": version})
            return await super()._handle(request)

        def _generation(self, request: Any) -> int:
            try:
                obj = self.objects[request.resource, request.namespace, request.name]
                return int(obj["metadata"].get("generation") or 1)
            except (KeyError, ValueError, TypeError):
                return 1

    return Emulator


# --------------------------------------------------------------------------- pods as processes


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def render_env(container: dict[str, Any], pod: dict[str, Any], ip: str) -> dict[str, str]:
    """The container's env as kubelet would set it (fieldRefs resolved, $(VAR) expanded)."""
    fields = {"metadata.name": pod["metadata"]["name"],
              "metadata.namespace": pod["metadata"]["namespace"], "status.podIP": ip}
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "valueFrom" in var:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)),
                                        str(var.get("value", "")))
    return env


def project_secret(target: Path, data: dict[str, bytes]) -> bool:
    """Write a Secret volume as the kubelet's atomic writer does: the files in a new directory,
    ``..data`` swapped to it in one rename, each key a symlink through ``..data``. True if
    anything changed."""
    current = target / "..data"
    if current.exists() and {p.name: p.read_bytes() for p in current.iterdir()} == data:
        return False
    target.mkdir(parents=True, exist_ok=True)
    fresh = target / f"..{time.time_ns()}"
    fresh.mkdir()
    for key, value in data.items():
        (fresh / key).write_bytes(value)
        (fresh / key).chmod(0o440)
    link = target / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(fresh.name)
    old = os.readlink(current) if current.is_symlink() else None
    link.rename(current)
    for key in data:
        if not (target / key).is_symlink():
            (target / key).symlink_to(f"..data/{key}")
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def secret_data(obj: dict[str, Any] | None) -> dict[str, bytes] | None:
    if obj is None:
        return None
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def resolve_pod_names(hosts: Path) -> None:
    """This process resolves the pods' names from ``hosts`` too (tests follow redirects to
    them, and call the nodes by the names their certificates carry)."""
    spec = importlib.util.spec_from_file_location("kmock_pod_dns", POD_SITE / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get("kmock_pod_dns")
    if module is None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["kmock_pod_dns"] = module
    module.install(str(hosts))


def pod_dns(hosts: Path) -> dict[str, str]:
    """The environment that makes a process resolve the pods' names from ``hosts``
    (``pod_site/sitecustomize.py``), as the cluster's DNS would."""
    path = os.pathsep.join(filter(None, [str(POD_SITE), os.environ.get("PYTHONPATH", "")]))
    return {"KMOCK_HOSTS": str(hosts), "PYTHONPATH": path}


@dataclass
class PodProcess:
    name: str
    ordinal: int
    ip: str
    claim_dir: Path
    env: dict[str, str]
    log: Path
    hosts: Path  # the pods' names and IPs (see the module docstring)
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: int = 0

    @property
    def tls(self) -> bool:
        return bool(self.env.get("KONSUL_TLS_CERT_FILE"))

    @property
    def url(self) -> str:
        """By pod IP; with TLS by the name the node advertises (its certificate's, and what
        its redirects name)."""
        if self.tls:
            return f"https://{self.env['KONSUL_HTTP_ADVERTISE_ADDR']}"
        return f"http://{self.ip}:8500"

    def start(self) -> None:
        env = {**os.environ, **self.env}
        # What a pod's own network namespace would give it (see the module docstring).
        env.update({
            "KONSUL_HOST": self.ip,
            "KONSUL_RAFT_BIND_ADDR": f"{self.ip}:7000",
            "KONSUL_DATA_DIR": str(self.claim_dir),
            "KONSUL_RAFT_DATA_DIR": str(self.claim_dir / "raft"),
        })
        env.update(pod_dns(self.hosts))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "konsul"], env=env,
                                         stdout=log, stderr=log, cwd=REPO)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class StatefulSetController:
    api: Emulator
    root: Path
    prefix: str
    pods: dict[str, PodProcess] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # each pod's, as created
    waiting: set[str] = field(default_factory=set)  # pods whose Secrets do not exist yet
    _sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    _passes: int = 0
    held: set[str] = field(default_factory=set)  # pods the test keeps down
    deleted: list[tuple[float, str]] = field(default_factory=list)  # pod deletions seen
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _thread: threading.Thread | None = None
    _bases: dict[str, int] = field(default_factory=dict)

    def start(self) -> StatefulSetController:
        resolve_pod_names(self.hosts)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sts-controller")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for pod in list(self.pods.values()):
            pod.stop(signal.SIGKILL)

    def ip_of(self, ordinal: int, sts: str = "") -> str:
        """Pod ``ordinal``'s address: the first StatefulSet seen gets .1, .2, ..., the next
        .21, .22, ... (two clusters at once never share an address)."""
        base = self._bases.setdefault(sts, 20 * len(self._bases)) if sts else 0
        return f"{self.prefix}.{base + ordinal + 1}"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    def _publish_dns(self, sts: dict[str, Any]) -> None:
        """The pods' DNS: every ordinal of every StatefulSet by its stable names, in /etc/hosts
        form. Replaced in one rename: the pods read it on every lookup."""
        lines = {"127.0.0.1 localhost"}
        for each in [sts, *self._sets.values()]:
            name, service = each["metadata"]["name"], each["spec"].get("serviceName", "")
            self._sets[name] = each
            for ordinal in range(16):
                pod = f"{name}-{ordinal}"
                fqdn = f"{pod}.{service}.{NS}.svc"
                lines.add(f"{self.ip_of(ordinal, name)} {fqdn} {fqdn}.cluster.local "
                          f"{pod}.{service}.{NS} {pod}.{service}")
        text = "\n".join(sorted(lines)) + "\n"
        if not self.hosts.exists() or self.hosts.read_text() != text:
            fresh = self.hosts.with_suffix(".new")
            fresh.write_text(text)
            fresh.replace(self.hosts)

    def _secret_volumes(self, template: dict[str, Any]) -> dict[str, str]:
        """Mount path -> Secret name, for the pod's Secret volumes."""
        spec = template["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes") or []
                   if "secret" in v}
        mounts = spec["containers"][0].get("volumeMounts") or []
        return {m["mountPath"]: secrets[m["name"]] for m in mounts if m["name"] in secrets}

    def volume_dir(self, pod: str, mount: str) -> Path:
        return self.root / "volumes" / pod / mount.strip("/").replace("/", "_")

    def _project_secrets(self, pod: str, template: dict[str, Any],
                         read: dict[str, dict[str, bytes] | None] | None = None) -> bool:
        """Write the pod's Secret volumes; False while one of its Secrets does not exist.
        ``read``: Secrets already fetched in this pass (one GET each, not one per pod)."""
        read = {} if read is None else read
        for mount, secret in self._secret_volumes(template).items():
            if secret not in read:
                read[secret] = secret_data(self.api.get("Secret", secret))
            data = read[secret]
            if data is None:
                return False
            project_secret(self.volume_dir(pod, mount), data)
        return True

    def claim_dir(self, claim: str) -> Path:
        return self.root / "claims" / claim

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self.sync()
            except Exception:
                self.errors.append(traceback.format_exc())
            self._stop.wait(0.2)

    # ------------------------------------------------------------------ one control pass

    def sync(self) -> None:
        sets = {s["metadata"]["name"]: s for s in self.api.list("StatefulSet")}
        objects = {p["metadata"]["name"]: p for p in self.api.list("Pod")}
        # A Pod object that went away: stop its process (graceful, like a kubelet).
        for name in list(self.pods):
            if name not in objects:
                self.deleted.append((time.monotonic(), name))
                self.pods.pop(name).stop()
                self.templates.pop(name, None)
        self.waiting &= set(objects)
        for sts_name, sts in list(sets.items()):
            if self._collect(sts):
                del sets[sts_name]
        for sts_name, sts in sets.items():
            self._sync_set(sts_name, sts, objects)
        # Garbage collection: pods whose StatefulSet is gone.
        for name, obj in objects.items():
            owners = {o.get("name") for o in obj["metadata"].get("ownerReferences") or []}
            if owners and not owners & set(sets):
                self.api.delete("Pod", name)
        self._sync_processes()

    def _collect(self, sts: dict[str, Any]) -> bool:
        """The garbage collector for a StatefulSet whose KonsulCluster is gone, and the
        StatefulSet controller's claim retention (``whenDeleted: Delete``) when it goes."""
        clusters = {c["metadata"]["name"] for c in self.api.list("KonsulCluster")}
        owners = {o.get("name") for o in sts["metadata"].get("ownerReferences") or []
                  if o.get("kind") == "KonsulCluster"}
        if not owners or owners & clusters:
            return False
        name = sts["metadata"]["name"]
        self.api.delete("StatefulSet", name)
        policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenDeleted") == "Delete":
            prefix = f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{name}"
            for claim in self.api.list("PersistentVolumeClaim"):
                if _ordinal(claim["metadata"]["name"], prefix) is not None:
                    self.api.delete("PersistentVolumeClaim", claim["metadata"]["name"])
        return True

    def _sync_set(self, sts_name: str, sts: dict[str, Any],
                  objects: dict[str, dict[str, Any]]) -> None:
        replicas = int(sts["spec"].get("replicas", 0))
        for name, _obj in objects.items():
            ordinal = _ordinal(name, sts_name)
            if ordinal is not None and ordinal >= replicas:
                self.api.delete("Pod", name)  # scale down: the process stops on the next pass
        self._publish_dns(sts)
        for ordinal in range(replicas):
            name = f"{sts_name}-{ordinal}"
            if name in self.held:
                continue
            if name not in objects:
                self._create_pod(sts, ordinal)
            elif name in self.waiting:
                self._start_process(sts, objects[name])

    def _create_pod(self, sts: dict[str, Any], ordinal: int) -> None:
        sts_name = sts["metadata"]["name"]
        name, ip = f"{sts_name}-{ordinal}", self.ip_of(ordinal, sts_name)
        template = sts["spec"]["template"]
        claim = f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{name}"
        if self.api.get("PersistentVolumeClaim", claim) is None:
            # A new claim is a new, empty volume.
            shutil.rmtree(self.claim_dir(claim), ignore_errors=True)
            vct = sts["spec"]["volumeClaimTemplates"][0]
            self.api.create({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "labels": dict(vct["metadata"].get("labels") or {})},
                "spec": vct["spec"], "status": {"phase": "Bound"},
            })
        self.claim_dir(claim).mkdir(parents=True, exist_ok=True)
        self.api.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": dict(template["metadata"].get("labels") or {}),
                "annotations": dict(template["metadata"].get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": sts_name, "uid": sts["metadata"].get("uid", ""),
                                     "controller": True}],
            },
            "spec": template["spec"],
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "False"}]},
        })
        self.waiting.add(name)
        pod = self.api.get("Pod", name)
        assert pod is not None
        self._start_process(sts, pod)

    def _start_process(self, sts: dict[str, Any], pod: dict[str, Any]) -> None:
        """The container starts once its Secret volumes can be mounted (as a kubelet waits)."""
        name = pod["metadata"]["name"]
        template = {"metadata": pod["metadata"], "spec": pod["spec"]}
        if not self._project_secrets(name, template):
            return
        self.waiting.discard(name)
        ordinal = _ordinal(name, sts["metadata"]["name"]) or 0
        ip = self.ip_of(ordinal, sts["metadata"]["name"])
        claim = f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{name}"
        env = render_env(pod["spec"]["containers"][0], pod, ip)
        for mount in self._secret_volumes(template):  # files at their mount paths
            local = str(self.volume_dir(name, mount))
            env = {k: v.replace(mount, local, 1) if v.startswith(mount + "/") else v
                   for k, v in env.items()}
        process = PodProcess(
            name=name, ordinal=ordinal, ip=ip, claim_dir=self.claim_dir(claim), env=env,
            log=self.root / f"{name}.log", hosts=self.hosts,
        )
        process.start()
        self.pods[name] = process
        self.templates[name] = template

    def _sync_processes(self) -> None:
        self._passes += 1
        read: dict[str, dict[str, bytes] | None] = {}
        for pod in list(self.pods.values()):
            if not pod.alive() and pod.name not in self.held:
                pod.restarts += 1  # kubelet restarts a crashed container
                pod.start()
            if self._passes % 5 == 0:  # a kubelet syncs mounted Secrets now and then
                self._project_secrets(pod.name, self.templates[pod.name], read)
            ready = pod.alive() and _answers_ready(pod.url)
            if ready != pod.ready:
                pod.ready = ready
                self.api.patch("Pod", pod.name, {"status": {"conditions": [
                    {"type": "Ready", "status": "True" if ready else "False"}]}})

    # ------------------------------------------------------------------ test controls

    def hold(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop a pod's process and keep it down (the Pod object stays) until released."""
        with self._lock:
            self.held.add(name)
            if name in self.pods:
                self.pods[name].stop(sig)

    def release(self, name: str) -> None:
        with self._lock:
            self.held.discard(name)

    def urls(self) -> list[str]:
        with self._lock:
            return [p.url for p in sorted(self.pods.values(), key=lambda p: p.ordinal)]

    def process(self, name: str) -> PodProcess:
        with self._lock:
            return self.pods[name]


def _ordinal(name: str, sts: str) -> int | None:
    tail = name[len(sts) + 1:] if name.startswith(sts + "-") else ""
    return int(tail) if tail.isdigit() else None


# Like a kubelet's HTTPS probe: no certificate check.
_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def _answers_ready(url: str) -> bool:
    try:
        code, _, _ = http("GET", url + "/health/ready", timeout=0.5, context=_PROBE_TLS)
    except OSError:
        return False
    return code == 200


# --------------------------------------------------------------------------- Jobs as processes


@dataclass
class JobController:
    """Plays the Job controller and kubelet for the operator's backup and restore Jobs: each
    new Job's container command runs once as a local process (``konsulctl`` from this
    checkout), with each volume mapped to its claim's directory (what the StatefulSet
    controller uses for the same claim) and ``/dev/termination-log`` to a file."""

    api: Emulator
    root: Path
    claims: StatefulSetController
    runs: list[str] = field(default_factory=list)  # Job names, in the order they ran
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> JobController:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="job-controller")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(150)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except OSError:
                pass  # the emulator was slow to answer (a loaded machine): the next pass
            except Exception:
                self.errors.append(traceback.format_exc())
            self._stop.wait(0.2)

    def sync(self) -> None:
        jobs = self.api.list("Job")
        for job in jobs:
            if job["metadata"]["name"] not in self.runs:
                self.runs.append(job["metadata"]["name"])
                self._run(job)
        # The garbage collector: Jobs of a deleted cluster, then the pods of deleted Jobs.
        clusters = {c["metadata"]["name"] for c in self.api.list("KonsulCluster")}
        for job in jobs:
            owners = {o.get("name") for o in job["metadata"].get("ownerReferences") or []}
            if owners and not owners & clusters:
                self.api.delete("Job", job["metadata"]["name"])
        names = {j["metadata"]["name"] for j in self.api.list("Job")}
        for pod in self.api.list("Pod"):
            job_name = (pod["metadata"].get("labels") or {}).get("job-name")
            if job_name and job_name not in names:
                self.api.delete("Pod", pod["metadata"]["name"])

    def _volume(self, job: str, volume: dict[str, Any]) -> Path:
        """A claim's directory, or a Secret's files (its ``items`` only, if it names some)."""
        if "persistentVolumeClaim" in volume:
            return self.claims.claim_dir(volume["persistentVolumeClaim"]["claimName"])
        source = volume["secret"]
        data = secret_data(self.api.get("Secret", source["secretName"])) or {}
        if source.get("items"):
            data = {i["path"]: data[i["key"]] for i in source["items"] if i["key"] in data}
        target = self.root / "job-volumes" / job / volume["name"]
        project_secret(target, data)
        return target

    def _run(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        pod_spec = job["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        volumes = {v["name"]: self._volume(name, v) for v in pod_spec.get("volumes") or []}
        mounts = {m["mountPath"]: volumes[m["name"]]
                  for m in container.get("volumeMounts") or []}
        for directory in mounts.values():
            directory.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.termination-log"
        args = []
        for arg in container["command"][1:]:
            for path, directory in mounts.items():
                if arg == path or arg.startswith(path + "/"):
                    arg = str(directory) + arg[len(path):]
            args.append(str(log) if arg == "/dev/termination-log" else arg)
        assert container["command"][0] == "konsulctl", container["command"]
        done = subprocess.run([sys.executable, "-m", "konsul.cli", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **pod_dns(self.claims.hosts)})
        message = log.read_text() if log.exists() and log.read_text() else ""
        if not message and done.returncode != 0:  # FallbackToLogsOnError
            message = (done.stdout + done.stderr)[-2000:]
        labels = {**(job["spec"]["template"]["metadata"].get("labels") or {}), "job-name": name}
        self.api.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{uuid.uuid4().hex[:5]}", "labels": labels},
            "spec": pod_spec,
            "status": {"phase": "Succeeded" if done.returncode == 0 else "Failed",
                       "containerStatuses": [{"name": container["name"], "state": {
                           "terminated": {"exitCode": done.returncode, "message": message}}}]},
        })
        if done.returncode == 0:
            status: dict[str, Any] = {"succeeded": 1, "conditions": [
                {"type": "Complete", "status": "True"}]}
        else:
            status = {"failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}
        self.api.patch("Job", name, {"status": status})


# --------------------------------------------------------------------------- the operator


@dataclass
class OperatorProcess:
    api_url: str
    root: Path
    metrics_port: int = 0
    liveness_port: int = 0
    verbose: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        kubeconfig = self.root / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{self.api_url}'}}}}]\n"
            "users: [{name: test, user: {token: test}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: test, namespace: default}}]\n"
            "current-context: kmock\n"
        )
        self.metrics_port = self.metrics_port or free_port()
        self.liveness_port = self.liveness_port or free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KONSUL_OPERATOR_SCANNING": "false",  # kmock answers 500 to namespace lists
            "KONSUL_OPERATOR_INTERVAL": "1",
            "KONSUL_OPERATOR_REQUEUE": "0.5",
        }
        with open(self.root / "operator.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "konsul_operator", "--namespace", NS, "--bind",
                 "127.0.0.1", "--metrics-port", str(self.metrics_port), "--liveness-port",
                 str(self.liveness_port), *(["--verbose"] if self.verbose else [])],
                env=env, stdout=log, stderr=log, cwd=REPO,
            )
        return self

    def kill(self) -> None:
        """A crash: no cleanup, whatever step it was in the middle of."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        path = self.root / "operator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            text = resp.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                values[series] = float(value)
        return values


if __name__ == "__main__":
    asyncio.run(serve_emulator())
