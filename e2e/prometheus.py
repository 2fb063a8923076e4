"""A real Prometheus (Debian's `prometheus`) for the monitoring scenario, configured the way the
Prometheus Operator would configure it from the cluster's own objects: each ServiceMonitor
becomes a scrape job over its Service's endpoints, each PrometheusRule a rule file.

Debian builds Prometheus without its Kubernetes service discovery (removed in 1.5.0 for its
dependencies, see /usr/share/doc/prometheus/NEWS.Debian.gz). ``KubernetesSD`` stands in for it:
an HTTP service discovery endpoint (``http_sd_configs``, which Debian's build has) that reads the
API server's EndpointSlices and Services with Prometheus' own ServiceAccount token (RBAC as the
Prometheus Operator's docs grant) and labels each target with the ``__meta_kubernetes_*`` names
Prometheus' ``role: endpointslice`` discovery uses. The relabelling a ServiceMonitor becomes is
then the Prometheus Operator's, cut down to what a ServiceMonitor of ours holds: keep the
endpoints of Services whose labels match ``selector.matchLabels`` and whose port is the
endpoint's ``port``; ``job`` from the Service label named by ``jobLabel`` (else the Service's
name); ``namespace``, ``service``, ``pod`` and ``endpoint`` labels.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.driver import SLOW, Cluster
from tests.processes import free_port

# Prometheus' own account lives in "default", not in the namespace it watches: what the release
# leaves there is checked to be nothing.
ACCOUNT_NAMESPACE = "default"
RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: e2e-prometheus, namespace: {ACCOUNT_NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: e2e-prometheus}}
rules:
  - apiGroups: [""]
    resources: [services, endpoints, pods]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: e2e-prometheus}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-prometheus}}
subjects: [{{kind: ServiceAccount, name: e2e-prometheus, namespace: {ACCOUNT_NAMESPACE}}}]
"""


def label_name(label: str) -> str:
    """A Kubernetes label as Prometheus' service discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


SecretFile = Callable[[str, dict[str, str]], str]


def scrape_config(monitor: dict[str, Any], sd_url: str,
                  secret_file: SecretFile) -> list[dict[str, Any]]:
    """One scrape job per endpoint of a ServiceMonitor, its targets from ``KubernetesSD``.
    ``secret_file(namespace, {"name", "key"})``: a file holding that key of that Secret (the
    Prometheus Operator mounts the Secrets its endpoints name the same way)."""
    meta, spec = monitor["metadata"], monitor["spec"]
    namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [meta["namespace"]]
    keep = [
        {"source_labels": [f"__meta_kubernetes_service_label_{label_name(k)}"],
         "regex": re.escape(v), "action": "keep"}
        for k, v in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items())
    ]
    jobs = []
    for index, endpoint in enumerate(spec.get("endpoints") or []):
        relabel = [
            *keep,
            {"source_labels": ["__meta_kubernetes_endpointslice_port_name"],
             "regex": re.escape(endpoint["port"]), "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
        ]
        if spec.get("jobLabel"):
            job_label = f"__meta_kubernetes_service_label_{label_name(spec['jobLabel'])}"
            relabel.append({"source_labels": [job_label], "regex": "(.+)",
                            "target_label": "job", "replacement": "${1}"})
        job: dict[str, Any] = {
            "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
            "metrics_path": endpoint.get("path", "/metrics"),
            "scheme": endpoint.get("scheme", "http"),
            "http_sd_configs": [{
                "url": f"{sd_url}/?{urllib.parse.urlencode({'namespaces': ','.join(namespaces)})}",
                "refresh_interval": "5s"}],
            "relabel_configs": relabel,
        }
        if endpoint.get("interval"):
            job["scrape_interval"] = endpoint["interval"]
        tls = endpoint.get("tlsConfig") or {}
        if tls:
            job["tls_config"] = {"ca_file": secret_file(meta["namespace"], tls["ca"]["secret"])}
            if tls.get("serverName"):
                job["tls_config"]["server_name"] = tls["serverName"]
        if endpoint.get("bearerTokenSecret"):
            job["authorization"] = {"credentials_file": secret_file(
                meta["namespace"], endpoint["bearerTokenSecret"])}
        jobs.append(job)
    return jobs


def rule_file(rule: dict[str, Any]) -> dict[str, Any]:
    return {"groups": rule["spec"].get("groups") or []}


@dataclass
class KubernetesSD:
    """Prometheus' Kubernetes discovery (``role: endpointslice``) as an HTTP discovery endpoint
    on 127.0.0.1: ``GET /?namespaces=a,b`` lists the target groups of every EndpointSlice there,
    read from the API server at ``server`` with ``token``."""

    server: str
    ca_file: Path
    token: str
    url: str = ""
    _httpd: http.server.ThreadingHTTPServer | None = None
    _context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=str(self.ca_file))

    def _get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.server + path,
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10, context=self._context) as resp:
            found: dict[str, Any] = json.load(resp)
            return found

    def groups(self, namespace: str) -> list[dict[str, Any]]:
        services = {s["metadata"]["name"]: s for s in
                    self._get(f"/api/v1/namespaces/{namespace}/services")["items"]}
        slices = self._get(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
        groups = []
        for piece in slices["items"]:
            name = (piece["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            service = services.get(name or "")
            if service is None:
                continue
            common = {"__meta_kubernetes_namespace": namespace,
                      "__meta_kubernetes_service_name": name or ""}
            for key, value in (service["metadata"].get("labels") or {}).items():
                common[f"__meta_kubernetes_service_label_{label_name(key)}"] = value
                common[f"__meta_kubernetes_service_labelpresent_{label_name(key)}"] = "true"
            for endpoint in piece.get("endpoints") or []:
                ready = (endpoint.get("conditions") or {}).get("ready")
                pod = (endpoint.get("targetRef") or {}).get("name", "")
                for port in piece.get("ports") or []:
                    for address in endpoint.get("addresses") or []:
                        groups.append({"targets": [f"{address}:{port['port']}"], "labels": {
                            **common, "__meta_kubernetes_pod_name": pod,
                            "__meta_kubernetes_endpointslice_port_name": port.get("name", ""),
                            "__meta_kubernetes_endpointslice_endpoint_conditions_ready":
                                str(bool(ready)).lower()}})
        return groups

    def start(self) -> KubernetesSD:
        discovery = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                namespaces = (query.get("namespaces") or [""])[0].split(",")
                try:
                    body = json.dumps([g for ns in namespaces if ns
                                       for g in discovery.groups(ns)]).encode()
                    code = 200
                except OSError as exc:   # Prometheus keeps the last good answer
                    body, code = str(exc).encode(), 503
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True,
                         name="kubernetes-sd").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()


@dataclass
class Prometheus:
    """Debian's prometheus on 127.0.0.1, with a config made from the cluster's ServiceMonitors
    and PrometheusRules in ``namespace``."""

    cluster: Cluster
    namespace: str
    root: Path
    process: subprocess.Popen[bytes] | None = None
    discovery: KubernetesSD | None = None
    url: str = ""

    def _discovery(self) -> KubernetesSD:
        """Discovery with the kubeconfig's server and CA and a token of Prometheus' own."""
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        server = config["clusters"][0]["cluster"]
        ca = self.root / "ca.crt"
        if "certificate-authority-data" in server:
            ca.write_bytes(base64.b64decode(server["certificate-authority-data"]))
        else:
            ca.write_text(Path(server["certificate-authority"]).read_text())
        token = self.cluster.kubectl("create", "token", "e2e-prometheus", "-n",
                                     ACCOUNT_NAMESPACE, "--duration=3h").stdout.strip()
        return KubernetesSD(server["server"], ca, token).start()

    def write_config(self) -> tuple[list[str], list[str]]:
        """The config from what the cluster serves now; the job and rule group names."""
        assert self.discovery is not None
        monitors = self.cluster.get("servicemonitors", "-n", self.namespace)["items"]
        rules = self.cluster.get("prometheusrules", "-n", self.namespace)["items"]
        rule_dir = self.root / "rules"
        rule_dir.mkdir(exist_ok=True)
        for rule in rules:
            path = rule_dir / f"{rule['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(rule_file(rule)))
        jobs = [job for monitor in monitors
                for job in scrape_config(monitor, self.discovery.url, self._secret_file)]
        config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
                  "rule_files": [str(rule_dir / "*.yaml")], "scrape_configs": jobs}
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        groups = [g["name"] for rule in rules for g in rule_file(rule)["groups"]]
        return [j["job_name"] for j in jobs], groups

    def _secret_file(self, namespace: str, ref: dict[str, str]) -> str:
        """One key of a Secret as a file under the config's directory (waits for the Secret:
        the operator makes the metrics token once the cluster has a leader)."""
        def read() -> bytes | None:
            found = self.cluster.get("secret", ref["name"], "-n", namespace)
            data = ((found or {}).get("data") or {}).get(ref["key"])
            return base64.b64decode(data) if data else None

        deadline = time.monotonic() + 60 * SLOW
        while (content := read()) is None:
            assert time.monotonic() < deadline, f"no Secret {namespace}/{ref['name']}"
            time.sleep(1)
        path = self.root / "secrets" / f"{namespace}_{ref['name']}_{ref['key']}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        return str(path)

    def start(self) -> Prometheus:
        self.cluster.kubectl("apply", "-f", "-", stdin=RBAC)
        self.discovery = self._discovery()
        self.write_config()
        check = subprocess.run(["promtool", "check", "config", str(self.root / "prometheus.yml")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.root / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={self.root / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while self.api("/-/ready", raw=True) is None:
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"prometheus not ready\n{self.log()}"
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
        if self.discovery is not None:
            self.discovery.stop()
        self.cluster.kubectl("delete", "-f", "-", "--ignore-not-found", check=False,
                             stdin=RBAC)

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def api(self, path: str, raw: bool = False, **query: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = resp.read().decode()
        except OSError:
            return None
        return body if raw else json.loads(body)["data"]

    def targets(self) -> list[dict[str, Any]]:
        return list((self.api("/api/v1/targets") or {}).get("activeTargets") or [])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list((self.api("/api/v1/rules") or {}).get("groups") or [])

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        alerts = (self.api("/api/v1/alerts") or {}).get("alerts") or []
        return [a for a in alerts
                if a["labels"].get("alertname") == name and a.get("state") == state]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list((self.api("/api/v1/query", query=expr) or {}).get("result") or [])
