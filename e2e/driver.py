"""A real Kubernetes cluster as the e2e scenarios see it: kubectl and helm with one kubeconfig,
and the Konsul nodes reached by pod IP, as the operator reaches them.

Two drivers make one (e2e/conftest.py picks with KONSUL_E2E_DRIVER): the local plane (the
default; its pod network is the host's bridge, Service names resolve on the host) and kind
(e2e/kind.py routes its pod range through the node container and keeps the cluster's names in
/etc/hosts by the plane DNS's rules). Both give this machine what a pod has: pod IPs and the
cluster's DNS names, a Service name answering its ready endpoints.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.plane import names
from konsul.client import Client
from tests.processes import REPO, http

HTTP_PORT = 8500
CHART = REPO / "charts" / "konsul"
# Every deadline is multiplied by this: 2 shared cores under other suites' load.
SLOW = float(os.environ.get("KONSUL_E2E_SLOW", "1"))


class CommandFailed(AssertionError):
    pass


@dataclass(frozen=True)
class Pod:
    name: str
    uid: str  # a new uid means a new pod (deleted and recreated)
    ready: bool
    ip: str | None
    phase: str


@dataclass
class Cluster:
    """kubectl/helm on one kubeconfig."""

    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    name: str = "plane"
    log: list[str] = field(default_factory=list)

    def run(self, *argv: str, stdin: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout * SLOW, cwd=REPO,
                              env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        if check and proc.returncode != 0:
            raise CommandFailed(f"{' '.join(argv)} -> {proc.returncode}\n{proc.stdout[-3000:]}"
                                f"\n{proc.stderr[-3000:]}")
        return proc

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_bin, *args, stdin=stdin, check=check, timeout=timeout)

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_bin, *args, timeout=timeout)

    def get(self, *args: str) -> Any:
        """``kubectl get -o json``; None when the object does not exist."""
        proc = self.kubectl("get", "-o", "json", *args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise CommandFailed(f"kubectl get {' '.join(args)}: {proc.stderr}")
        return json.loads(proc.stdout)


@dataclass(frozen=True)
class Credentials:
    """What a client of a secure cluster needs (docs/kubernetes.md): the CA of Secret
    ``<name>-tls`` (as a file) and the management token of Secret
    ``<name>-management-token``. Both None for a cluster with TLS and ACLs off."""

    ca_file: str | None = None
    token: str | None = None

    def context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def headers(self) -> dict[str, str]:
        return {"X-Konsul-Token": self.token} if self.token else {}


@dataclass
class Konsul:
    """One KonsulCluster in one namespace: reads, node access and disruptions.

    The nodes are reached as a client in the cluster reaches them: by the names their
    certificates carry (``<pod>.<name>-peers.<ns>.svc``, which the plane's DNS also gives the
    host), with the cluster's CA and management token when it has them."""

    cluster: Cluster
    namespace: str
    name: str
    operator_selector: str = "app.kubernetes.io/component=operator"
    _credentials: Credentials | None = None

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/name=konsul,app.kubernetes.io/instance={self.name}"

    def kubectl(self, *args: str, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check, timeout=timeout)

    def get(self, *args: str) -> Any:
        return self.cluster.get("-n", self.namespace, *args)

    # ------------------------------------------------------------------ reads

    def kc(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.get("konsulcluster", self.name)
        return found

    def status(self) -> dict[str, Any]:
        return dict((self.kc() or {}).get("status") or {})

    def pods(self) -> dict[str, Pod]:
        """The cluster's pods that are not being deleted."""
        found = {}
        for pod in (self.get("pods", "-l", self.selector) or {"items": []})["items"]:
            meta, status = pod["metadata"], pod.get("status") or {}
            if meta.get("deletionTimestamp"):
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in status.get("conditions") or [])
            found[meta["name"]] = Pod(meta["name"], meta["uid"], ready, status.get("podIP"),
                                      status.get("phase", ""))
        return found

    def credentials(self) -> Credentials:
        """The cluster's CA and management token, read once they exist."""
        if self._credentials is None:
            tls = self._secret_key(f"{self.name}-tls", "ca.crt")
            token = self._secret_key(f"{self.name}-management-token", "token")
            if tls is None and token is None and not self._insecure():
                return Credentials()   # not made yet: ask again next time
            ca_file = None
            if tls is not None:
                handle, ca_file = tempfile.mkstemp(prefix=f"e2e-{self.name}-ca-", suffix=".crt")
                os.write(handle, tls)
                os.close(handle)
            self._credentials = Credentials(ca_file, token.decode() if token else None)
        return self._credentials

    def _secret_key(self, secret: str, key: str) -> bytes | None:
        found = self.get("secret", secret)
        data = ((found or {}).get("data") or {}).get(key)
        return base64.b64decode(data) if data else None

    def _insecure(self) -> bool:
        spec = (self.kc() or {}).get("spec") or {}
        return (spec.get("tls") or {}).get("enabled") is False and (
            spec.get("acl") or {}).get("enabled") is False

    def http(self, method: str, url: str, body: Any = None, timeout: float = 10.0
             ) -> tuple[int, dict[str, str], Any]:
        creds = self.credentials()
        return http(method, url, body, timeout, context=creds.context(), headers=creds.headers())

    def client(self, timeout: float = 10.0) -> Client:
        """A ``konsul.client.Client`` of the client Service, as an application uses it."""
        creds = self.credentials()
        return Client(f"{self.scheme()}://{self.client_address()}", timeout=timeout,
                      token=creds.token, ca_file=creds.ca_file)

    def scheme(self) -> str:
        return "https" if self.credentials().ca_file else "http"

    def node_url(self, pod: str, pods: dict[str, Pod] | None = None) -> str | None:
        """The pod's API by its DNS name; None while it has no address."""
        found = (pods if pods is not None else self.pods()).get(pod)
        if not (found and found.ip):
            return None
        return f"{self.scheme()}://{pod}.{self.name}-peers.{self.namespace}.svc:{HTTP_PORT}"

    def node_status(self, pod: str, pods: dict[str, Pod] | None = None
                    ) -> dict[str, Any] | None:
        url = self.node_url(pod, pods)
        if url is None:
            return None
        try:
            code, _, body = self.http("GET", url + "/cluster/status", timeout=3)
        except (OSError, ValueError):
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def statuses(self, pods: dict[str, Pod] | None = None
                 ) -> dict[str, dict[str, Any] | None]:
        pods = self.pods() if pods is None else pods
        return {name: self.node_status(name, pods) for name in sorted(pods)}

    def client_address(self) -> str:
        """What a client on this machine dials for the cluster's client Service: its name (the
        certificates name no ClusterIP)."""
        return f"{self.name}.{self.namespace}.svc.{names.CLUSTER_DOMAIN}:{HTTP_PORT}"

    def claims(self) -> dict[str, str]:
        """The cluster's PVCs that are not being deleted: name -> uid."""
        body = self.get("pvc") or {"items": []}
        prefix = f"data-{self.name}-"
        return {c["metadata"]["name"]: c["metadata"]["uid"] for c in body["items"]
                if c["metadata"]["name"].startswith(prefix)
                and not c["metadata"].get("deletionTimestamp")}

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=KonsulCluster,involvedObject.name={self.name}"
        if reason:
            selector += f",reason={reason}"
        body = self.get("events", "--field-selector", selector) or {"items": []}
        return list(body["items"])

    def owned(self) -> list[str]:
        """Everything the operator makes for the cluster, by label, that still exists."""
        proc = self.kubectl("get", "statefulsets,services,poddisruptionbudgets,pods",
                            "-l", self.selector, "-o", "name")
        return proc.stdout.split()

    def operator_pod(self) -> dict[str, Any] | None:
        pods = [p for p in (self.get("pods", "-l", self.operator_selector)
                            or {"items": []})["items"]
                if not p["metadata"].get("deletionTimestamp")]
        return pods[0] if len(pods) == 1 else None

    def diagnostics(self) -> str:
        parts = []
        for args in (["get", "konsulcluster", self.name, "-o", "yaml"],
                     ["get", "pods,pvc,statefulsets", "-o", "wide"],
                     ["get", "events", "--sort-by=.lastTimestamp"],
                     ["logs", "-l", self.operator_selector, "--tail=150"]):
            proc = self.kubectl(*args, check=False)
            parts.append(f"--- kubectl {' '.join(args)}\n{proc.stdout[-6000:]}{proc.stderr}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ actions

    def scale(self, replicas: int) -> None:
        # The scale subresource, as `kubectl scale` (and an HPA) use it.
        self.kubectl("scale", f"konsulcluster/{self.name}", f"--replicas={replicas}")

    def delete_pods(self, *pods: str, grace: int | None = None) -> None:
        extra = [] if grace is None else [f"--grace-period={grace}"]
        self.kubectl("delete", "pod", *pods, "--wait=false", *extra)

    def delete_pod_and_claim(self, pod: str, deadline: float = 120) -> None:
        """The claim first (it waits for its pod: kubernetes.io/pvc-protection), then the pod.
        The StatefulSet controller may recreate the pod while the old claim still terminates;
        such a pod would wait for it forever, so it is deleted again until a new claim is
        bound."""
        claim = f"data-{pod}"
        old = self.get("pvc", claim)
        assert old is not None, f"{claim} does not exist"
        self.kubectl("delete", "pvc", claim, "--wait=false")
        self.delete_pods(pod)
        end = time.monotonic() + deadline * SLOW
        while time.monotonic() < end:
            pvc = self.get("pvc", claim)
            if (pvc is not None and pvc["metadata"]["uid"] != old["metadata"]["uid"]
                    and (pvc.get("status") or {}).get("phase") == "Bound"):
                return
            stuck = self.get("pod", pod)
            if stuck and (stuck.get("status") or {}).get("phase") == "Pending" and (
                    pvc is None or pvc["metadata"].get("deletionTimestamp")):
                self.delete_pods(pod)
            time.sleep(1)
        raise AssertionError(f"{pod} never got a new claim\n{self.diagnostics()}")

    def nodes(self) -> list[str]:
        return self.cluster.kubectl("get", "nodes", "-o", "name").stdout.split()

    def hold(self, pods: list[str]) -> None:
        """Down until released: every node cordoned, the pods deleted; the StatefulSet's new
        pods stay Pending (their volumes stay)."""
        for node in self.nodes():
            self.cluster.kubectl("cordon", node)
        self.delete_pods(*pods, grace=1)

    def release(self) -> None:
        for node in self.nodes():
            self.cluster.kubectl("uncordon", node)
