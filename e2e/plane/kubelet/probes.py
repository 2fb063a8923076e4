"""Startup, liveness and readiness probes (HTTP, TCP, exec), run from the kubelet against the
pod's address, with Kubernetes' defaults and thresholds."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from e2e.plane.kube import Obj

Exec = Callable[[list[str], float], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class Probe:
    spec: Obj

    @property
    def initial_delay(self) -> float:
        return float(self.spec.get("initialDelaySeconds", 0))

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds", 1))

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold", 1))

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold", 3))


def resolve_port(port: int | str, container: Obj) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"no container port named {port!r}")


async def check(probe: Probe, pod_ip: str, container: Obj, run_exec: Exec) -> tuple[bool, str]:
    """One probe attempt: (succeeded, what happened)."""
    spec = probe.spec
    try:
        if "httpGet" in spec:
            get = spec["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            url = (f"{scheme}://{get.get('host') or pod_ip}:{resolve_port(get['port'], container)}"
                   f"{get.get('path', '/')}")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.37")
            context: ssl.SSLContext | bool = (
                ssl._create_unverified_context() if scheme == "https" else False)
            async with aiohttp.ClientSession() as session, session.get(
                    url, headers=headers, ssl=context, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=probe.timeout)) as response:
                ok = 200 <= response.status < 400
                return ok, f"HTTP probe failed with statuscode: {response.status}"
        if "tcpSocket" in spec:
            port = resolve_port(spec["tcpSocket"]["port"], container)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(spec["tcpSocket"].get("host") or pod_ip, port),
                probe.timeout)
            writer.close()
            return True, ""
        if "exec" in spec:
            code, output = await run_exec(spec["exec"]["command"], probe.timeout)
            return code == 0, f"exec probe exited {code}: {output.strip()[:200]}"
        return False, f"unsupported probe handler {sorted(spec)}"
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        return False, f"probe failed: {type(exc).__name__}: {exc}"
