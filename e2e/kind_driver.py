"""``tests.k8s_helpers.Driver`` on a real cluster (kind), through kubectl, helm and a
``kubectl proxy``: the nodes' HTTP API is reached through the API server's pod proxy
(``/api/v1/namespaces/<ns>/pods/<pod>:8500/proxy/...``), which survives pod restarts and needs no
port-forward per pod. The same calls are answered by tests/chart/kmock_driver.py in make test.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.k8s_helpers import PodState
from tests.processes import REPO, http

BIN = REPO / ".venv" / "bin"


def tool(name: str) -> str:
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} not found (scripts/install-helm.sh installs helm and kubectl)"
    return found


def run(*args: str, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")
    return proc


def proxied_http(method: str, url: str, body: Any = None, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """``tests.processes.http`` through the API server's pod proxy. An answer that is not the
    node's own (the proxy's plain-text or ``Status`` error while a pod restarts) is raised as the
    connection error it stands for, so the write load counts it as refused (nothing reached the
    node) or uncertain, never as a 5xx of Konsul's."""
    try:
        code, answered, decoded = http(method, url, body, timeout=timeout, headers=headers)
    except ValueError as exc:  # not JSON: the proxy's own error text
        raise ConnectionResetError(f"proxy answered non-JSON: {exc}") from exc
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        message = str(decoded.get("message", ""))
        if "connection refused" in message:
            raise ConnectionRefusedError(message)
        raise ConnectionResetError(f"proxy: {code} {message}")
    return code, answered, decoded


class Proxy:
    """``kubectl proxy`` on a free local port, for the whole session."""

    def __init__(self, kubeconfig: Path) -> None:
        self.proc = subprocess.Popen(
            [tool("kubectl"), "proxy", "--port=0"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "Starting to serve on 127.0.0.1:PORT"
        assert "Starting to serve on" in line, line
        self.url = "http://" + line.strip().rsplit(" ", 1)[1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class KindDriver:
    slow = 3.0  # pulls are local (kind load), but scheduling and volume binding take time

    def __init__(self, kubeconfig: Path, namespace: str, release: str, name: str,
                 proxy: Proxy, helm_args: list[str]) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.release_name = release
        self.name = name
        self.proxy = proxy
        self.helm_args = helm_args
        self._token: str | None = None
        self._tls: bool | None = None
        self.selector = f"app.kubernetes.io/name=konsul,app.kubernetes.io/instance={name}"

    # ------------------------------------------------------------------ plumbing

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(tool("kubectl"), "-n", self.namespace, *args,
                   env={"KUBECONFIG": str(self.kubeconfig)}, check=check, timeout=120)

    def get_json(self, *args: str) -> Any:
        proc = self.kubectl("get", *args, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return json.loads(proc.stdout)

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(tool("helm"), "--namespace", self.namespace, *args,
                   env={"KUBECONFIG": str(self.kubeconfig)}, timeout=timeout)

    # ------------------------------------------------------------------ reads

    def kc(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.get_json("konsulcluster", self.name)
        return found

    def pods(self) -> dict[str, PodState]:
        body = self.get_json("pods", "-l", self.selector) or {"items": []}
        found = {}
        for pod in body["items"]:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            found[meta["name"]] = PodState(meta["name"], meta["uid"], ready)
        return found

    # ------------------------------------------------------------------ calls to the nodes

    def _spec(self, part: str) -> dict[str, Any]:
        return dict(((self.kc() or {}).get("spec") or {}).get(part) or {})

    def tls(self) -> bool:
        """HTTPS to the pod (the API server's pod proxy checks no certificate of it); read
        once the KonsulCluster exists (it is on by default)."""
        if self._tls is None and self.kc() is not None:
            self._tls = bool(self._spec("tls").get("enabled", True))
        return self._tls is not False

    def headers(self) -> dict[str, str]:
        """The operator's management token, once its Secret exists (ACLs are on by default)."""
        if self._token is None and self._spec("acl").get("enabled", True):
            found = self.get_json("secret", f"{self.name}-management-token")
            if found is not None:
                self._token = base64.b64decode(found["data"]["token"]).decode()
        return {"X-Konsul-Token": self._token} if self._token else {}

    def http_fn(self, method: str, url: str, body: Any = None, timeout: float = 10.0
                ) -> tuple[int, dict[str, str], Any]:
        return proxied_http(method, url, body, timeout, headers=self.headers())

    def node_url(self, pod: str) -> str:
        scheme = "https:" if self.tls() else ""
        return (f"{self.proxy.url}/api/v1/namespaces/{self.namespace}/pods/{scheme}{pod}:8500"
                "/proxy")

    def node_status(self, pod: str) -> dict[str, Any] | None:
        try:
            code, _, body = self.http_fn("GET", self.node_url(pod) + "/cluster/status",
                                         timeout=3)
        except OSError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def image(self) -> str:
        sts = self.get_json("statefulset", self.name) or {}
        return str(sts["spec"]["template"]["spec"]["containers"][0]["image"])

    def claims(self) -> list[str]:
        body = self.get_json("pvc") or {"items": []}
        prefix = f"data-{self.name}-"
        return sorted(c["metadata"]["name"] for c in body["items"]
                      if c["metadata"]["name"].startswith(prefix))

    def events(self) -> list[dict[str, Any]]:
        body = self.get_json(
            "events", "--field-selector",
            f"involvedObject.kind=KonsulCluster,involvedObject.name={self.name}",
        ) or {"items": []}
        return list(body["items"])

    def owned(self) -> list[str]:
        proc = self.kubectl("get", "statefulsets,services,poddisruptionbudgets",
                            "-l", self.selector, "-o", "name")
        return proc.stdout.split()

    def diagnostics(self) -> str:
        parts = []
        for args in (["get", "konsulcluster", self.name, "-o", "yaml"],
                     ["get", "pods,pvc,statefulsets", "-o", "wide"],
                     ["get", "events", "--sort-by=.lastTimestamp"],
                     ["logs", "deployment/konsul-operator", "--tail=200"]):
            proc = self.kubectl(*args, check=False)
            parts.append(f"--- kubectl {' '.join(args)}\n{proc.stdout[-6000:]}{proc.stderr}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ actions

    def create_cluster(self, replicas: int) -> None:
        """Through the chart (cluster.enabled), as a user would."""
        self.helm("upgrade", self.release_name, str(REPO / "charts" / "konsul"), "--reuse-values",
                  "--set", "cluster.enabled=true", "--set", f"cluster.name={self.name}",
                  "--set", f"cluster.spec.replicas={replicas}", *self.helm_args)

    def scale(self, replicas: int) -> None:
        # The scale subresource, as `kubectl scale` (and an HPA) would use it.
        self.kubectl("scale", f"konsulcluster/{self.name}", f"--replicas={replicas}")

    def set_image(self, image: str) -> None:
        self.kubectl("patch", "konsulcluster", self.name, "--type=merge",
                     "-p", json.dumps({"spec": {"image": image}}))

    def delete_pod(self, pod: str) -> None:
        self.kubectl("delete", "pod", pod, "--wait=false")

    def delete_pod_and_claim(self, pod: str) -> None:
        claim = f"data-{pod}"
        old = self.get_json("pvc", claim)
        assert old is not None, f"{claim} does not exist"
        old_uid = old["metadata"]["uid"]
        self.kubectl("delete", "pvc", claim, "--wait=false")
        self.kubectl("delete", "pod", pod, "--wait=false")
        # The StatefulSet controller may recreate the pod while the old claim is still
        # terminating; such a pod waits forever for it. Nudge until a new claim is bound.
        deadline = time.monotonic() + 120 * self.slow
        while time.monotonic() < deadline:
            pvc = self.get_json("pvc", claim)
            if (pvc is not None and not pvc["metadata"].get("deletionTimestamp")
                    and pvc["metadata"]["uid"] != old_uid
                    and pvc.get("status", {}).get("phase") == "Bound"):
                return
            stuck = self.get_json("pod", pod)
            if stuck and (stuck.get("status") or {}).get("phase") == "Pending" and (
                    pvc is None or pvc["metadata"].get("deletionTimestamp")):
                self.kubectl("delete", "pod", pod, "--wait=false", check=False)
            time.sleep(2)
        raise AssertionError(f"{pod} never got a new claim\n{self.diagnostics()}")

    def _nodes(self) -> list[str]:
        proc = run(tool("kubectl"), "get", "nodes", "-o", "name",
                   env={"KUBECONFIG": str(self.kubeconfig)})
        return proc.stdout.split()

    def hold(self, pods: list[str]) -> None:
        """Down until released: nodes cordoned, the pods deleted; the StatefulSet's new pods
        stay Pending (their volumes stay)."""
        for node in self._nodes():
            run(tool("kubectl"), "cordon", node, env={"KUBECONFIG": str(self.kubeconfig)})
        self.kubectl("delete", "pod", *pods, "--grace-period=1")

    def release(self, pods: list[str]) -> None:
        for node in self._nodes():
            run(tool("kubectl"), "uncordon", node, env={"KUBECONFIG": str(self.kubeconfig)})

    def delete_cluster(self) -> None:
        self.kubectl("delete", "konsulcluster", self.name, "--wait=false")
