"""``tests.k8s_helpers.Driver`` over the operator engineer's kmock harness (tests/operator/
harness.py): the real ``konsul-operator`` against kmock, pods played by real ``konsul``
processes. The kind e2e driver (e2e/kind_driver.py) answers the same calls from a real cluster.

The cluster is secure by default (TLS, ACLs): calls trust the operator's CA (pod IPs are not in
the certificates, so names are not checked) and carry the management token from its Secret.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

from tests.cluster_harness import free_subnet
from tests.k8s_helpers import PodState
from tests.operator.harness import (
    NS,
    Emulator,
    OperatorProcess,
    StatefulSetController,
    secret_data,
)
from tests.processes import http

OWNED_KINDS = ("StatefulSet", "Service", "PodDisruptionBudget")


class KmockDriver:
    slow = 1.0

    def __init__(self, root: Path, name: str = "kc", image: str = "konsul:0.1.0") -> None:
        self.name = name
        self.initial_image = image
        self._secrets: dict[str, dict[str, bytes]] = {}
        self._context: ssl.SSLContext | None = None
        self.api = Emulator().start()
        self.sts = StatefulSetController(self.api, root, free_subnet()).start()
        self.operator = OperatorProcess(self.api.url, root).start()
        self._pod = re.compile(rf"^{re.escape(name)}-(\d+)$")

    def stop(self) -> None:
        self.operator.stop()
        self.sts.stop()
        self.api.stop()

    # ------------------------------------------------------------------ calls to the nodes

    def _secret(self, suffix: str) -> dict[str, bytes] | None:
        """A Secret of the cluster's, read once it exists (neither the CA nor the management
        token changes during a scenario, and the emulator is slow to ask under load)."""
        if suffix not in self._secrets:
            found = secret_data(self.api.get("Secret", f"{self.name}-{suffix}"))
            if found is None:
                return None
            self._secrets[suffix] = found
        return self._secrets[suffix]

    def http_fn(self, method: str, url: str, body: Any = None, timeout: float = 10.0
                ) -> tuple[int, dict[str, str], Any]:
        """``http`` with the cluster's CA and management token (as soon as they exist)."""
        tls, token = self._secret("tls"), self._secret("management-token")
        if tls is not None and self._context is None:
            self._context = ssl.create_default_context(cadata=tls["ca.crt"].decode())
            self._context.check_hostname = False
        headers = {"X-Konsul-Token": token["token"].decode()} if token else {}
        return http(method, url, body, timeout, context=self._context, headers=headers)

    # ------------------------------------------------------------------ reads

    def kc(self) -> dict[str, Any] | None:
        return self.api.get("KonsulCluster", self.name)

    def pods(self) -> dict[str, PodState]:
        found = {}
        for pod in self.api.list("Pod"):
            meta = pod["metadata"]
            if not self._pod.match(meta["name"]) or meta.get("deletionTimestamp"):
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])
            found[meta["name"]] = PodState(meta["name"], str(meta.get("uid")), ready)
        return found

    def node_url(self, pod: str) -> str:
        match = self._pod.match(pod)
        assert match, pod
        if self._secret("tls") is not None:  # by the name the certificate and redirects carry
            return f"https://{pod}.{self.name}-peers.{NS}.svc:8500"
        return f"http://{self.sts.ip_of(int(match.group(1)))}:8500"

    def node_status(self, pod: str) -> dict[str, Any] | None:
        try:
            code, _, body = self.http_fn("GET", self.node_url(pod) + "/cluster/status", timeout=2)
        except OSError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def image(self) -> str:
        sts = self.api.get("StatefulSet", self.name) or {}
        return str(sts["spec"]["template"]["spec"]["containers"][0]["image"])

    def claims(self) -> list[str]:
        prefix = f"data-{self.name}-"
        return sorted(c["metadata"]["name"] for c in self.api.list("PersistentVolumeClaim")
                      if c["metadata"]["name"].startswith(prefix))

    def events(self) -> list[dict[str, Any]]:
        return [e for e in self.api.list("Event")
                if (e.get("involvedObject") or {}).get("name") == self.name]

    def owned(self) -> list[str]:
        found = []
        for kind in OWNED_KINDS:
            for obj in self.api.list(kind):
                owners = obj["metadata"].get("ownerReferences") or []
                if any(o.get("name") == self.name for o in owners):
                    found.append(f"{kind}/{obj['metadata']['name']}")
        return found

    def diagnostics(self) -> str:
        return (f"--- operator log (tail)\n{self.operator.logs()[-6000:]}\n"
                f"--- status\n{(self.kc() or {}).get('status')}\n--- pods {self.pods()}")

    # ------------------------------------------------------------------ actions

    def create_cluster(self, replicas: int) -> None:
        self.api.create({
            "apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
            "metadata": {"name": self.name},
            "spec": {"replicas": replicas, "image": self.initial_image},
        })

    def scale(self, replicas: int) -> None:
        assert self.api.patch("KonsulCluster", self.name, {"spec": {"replicas": replicas}})

    def set_image(self, image: str) -> None:
        assert self.api.patch("KonsulCluster", self.name, {"spec": {"image": image}})

    def delete_pod(self, pod: str) -> None:
        assert self.api.delete("Pod", pod), pod

    def delete_pod_and_claim(self, pod: str) -> None:
        # The claim first: the recreated pod then finds none and gets a new, empty volume.
        assert self.api.delete("PersistentVolumeClaim", f"data-{pod}"), pod
        self.delete_pod(pod)

    def hold(self, pods: list[str]) -> None:
        for pod in pods:
            self.sts.hold(pod)

    def release(self, pods: list[str]) -> None:
        for pod in pods:
            self.sts.release(pod)

    def delete_cluster(self) -> None:
        assert self.api.delete("KonsulCluster", self.name)
