"""A small async Kubernetes REST client: get, list, create, merge-patch, delete.

The operator needs a handful of calls on a few kinds; the ``kubernetes`` package only supplies
the connection settings (kubeconfig or in-cluster), the requests go through aiohttp. Label
selectors are also applied on our side, so an API emulator that ignores them gives the same view.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

# kind -> (API prefix, plural)
KINDS: dict[str, tuple[str, str]] = {
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules"),
    "KonsulCluster": ("/apis/konsul.io/v1alpha1", "konsulclusters"),
    "Event": ("/api/v1", "events"),
    "Secret": ("/api/v1", "secrets"),
}


SERVED_TTL = 60.0


class KubeError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {text[:300]}")
        self.status = status


TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass
class Connection:
    server: str
    token: str | None = None
    ca_file: str | None = None
    verify: bool = True
    # In a pod the service-account token is rotated by the kubelet: re-read it per request.
    token_file: str | None = None

    def authorization(self) -> dict[str, str]:
        token = self.token
        if self.token_file:
            with open(self.token_file) as f:
                token = f.read().strip()
        return {"Authorization": f"Bearer {token}"} if token else {}


def load_connection() -> Connection:
    """In-cluster service account if present, else the kubeconfig (KUBECONFIG or ~/.kube)."""
    from kubernetes import client, config

    token_file: str | None = None
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        token_file = TOKEN_FILE
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    conf = client.Configuration.get_default_copy()
    token = None
    auth = conf.api_key.get("authorization") or conf.api_key.get("BearerToken")
    if auth:
        token = str(auth).removeprefix("Bearer ").strip()
    return Connection(
        server=str(conf.host).rstrip("/"),
        token=token,
        ca_file=conf.ssl_ca_cert,
        verify=bool(conf.verify_ssl),
        token_file=token_file,
    )


def matches(obj: dict[str, Any], selector: dict[str, str]) -> bool:
    have = obj.get("metadata", {}).get("labels") or {}
    return all(have.get(k) == v for k, v in selector.items())


def path_of(kind: str, namespace: str | None, name: str | None = None) -> str:
    """The object's (or with no name its collection's) path; no namespace: every namespace."""
    prefix, plural = KINDS[kind]
    base = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{base}/{name}" if name else base


class Kube:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._session: aiohttp.ClientSession | None = None
        self._served: dict[str, tuple[bool, float]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_ctx: ssl.SSLContext | bool = False
            if self.conn.server.startswith("https") and self.conn.verify:
                ssl_ctx = ssl.create_default_context(cafile=self.conn.ca_file)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_ctx),
                timeout=aiohttp.ClientTimeout(total=15),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        headers = self.conn.authorization()
        if body is not None:
            headers["Content-Type"] = content_type
        async with self._client().request(
            method, self.conn.server + path, json=body, headers=headers
        ) as resp:
            if resp.status == 404:
                return None
            if resp.status >= 400:
                raise KubeError(resp.status, await resp.text())
            return await resp.json(content_type=None)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._call("GET", path_of(kind, namespace, name))
        return found

    async def list(
        self, kind: str, namespace: str | None, selector: dict[str, str]
    ) -> list[dict[str, Any]]:
        query = ",".join(f"{k}={v}" for k, v in selector.items())
        body = await self._call("GET", f"{path_of(kind, namespace)}?labelSelector={query}")
        items = (body or {}).get("items") or []
        return [i for i in items if matches(i, selector)]

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        created: dict[str, Any] = await self._call(
            "POST", path_of(obj["kind"], meta["namespace"]), obj
        )
        return created

    async def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> Any:
        return await self._call(
            "PATCH", path_of(kind, namespace, name), body, "application/merge-patch+json"
        )

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Any:
        return await self._call(
            "PATCH", path_of(kind, namespace, name) + "/status", {"status": status},
            "application/merge-patch+json",
        )

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete; False if it was already gone."""
        return await self._call("DELETE", path_of(kind, namespace, name)) is not None

    async def served(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves ``plural`` in ``group_version`` (e.g. monitoring);
        remembered for a minute (the Prometheus Operator's CRDs come and go rarely)."""
        key = f"{group_version}/{plural}"
        cached = self._served.get(key)
        if cached is not None and time.monotonic() - cached[1] < SERVED_TTL:
            return cached[0]
        try:
            body = await self._call("GET", f"/apis/{group_version}")
        except KubeError:
            body = None
        found = any(r.get("name") == plural for r in (body or {}).get("resources") or [])
        self._served[key] = (found, time.monotonic())
        return found
