"""What tests on the local plane use: kubectl with the plane's kubeconfig, JSON reads, and
polling with deadlines. e2e/conftest.py hands a ``Plane`` to every suite on the plane."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from e2e.plane import names

T = TypeVar("T")
# Every deadline below is multiplied by this: 2 shared cores under other suites' load.
SLOW = float(os.environ.get("KONSUL_E2E_SLOW", "1"))


class Plane:
    def __init__(self) -> None:
        self.kubeconfig = names.KUBECONFIG
        self.env = {**os.environ, "KUBECONFIG": str(names.KUBECONFIG)}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([names.kubectl(), *args], input=stdin, capture_output=True,
                              text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} -> {proc.returncode}\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def apply(self, namespace: str, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-",
                     stdin=yaml.safe_dump_all(objects))

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``probe`` until it returns something truthy; fail with ``what`` after the
        deadline (scaled by KONSUL_E2E_SLOW)."""
        deadline = time.monotonic() + timeout * SLOW
        last: T | None = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout * SLOW:.0f}s waiting for {what}"
                             f" (last: {last!r})")

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", "-o", "json", "-n", namespace, "pod", name, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def logs(self, namespace: str, pod: str, *args: str) -> str:
        return self.kubectl("logs", "-n", namespace, pod, *args, check=False).stdout

    def diagnostics(self, namespace: str) -> str:
        """What a failing test prints: pods, events, and each kubelet's last lines."""
        out = [self.kubectl("get", "pods,pvc,events", "-n", namespace, "-o", "wide",
                            check=False).stdout]
        for log in sorted(names.LOGS.glob("kubelet-*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)
