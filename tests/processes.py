"""Real ``konsul`` processes for tests: start on a free loopback port, poll until healthy, stop.

Shared by every test that needs a node as a separate process (integration, CLI, crash tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 10.0,
    *,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One JSON request; returns (status, headers, decoded body) for any status code.
    ``context``: the TLS context of an ``https://`` URL; ``headers``: e.g. a token."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw else None


@dataclass
class KonsulProcess:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready_path: str = "/health/ready"  # what start() waits for
    # With KONSUL_TLS_* in env: the context our requests use (it trusts the node's CA).
    ssl_context: ssl.SSLContext | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (a token)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], Any]:
        """``http`` to this node, with its TLS context and headers."""
        return http(method, self.url + path, body, timeout, context=self.ssl_context,
                    headers=self.headers)

    def start(self, timeout: float = 20.0) -> KonsulProcess:
        self.launch()
        wait_until(self.healthy, timeout, f"konsul on {self.url} to answer {self.ready_path}")
        return self

    def launch(self) -> KonsulProcess:
        """Start the process without waiting for it to answer (``start`` waits)."""
        if not self.port:
            self.port = free_port(self.host)
        env = {
            **os.environ,
            "KONSUL_HOST": self.host,
            "KONSUL_PORT": str(self.port),
            "KONSUL_DATA_DIR": str(self.data_dir),
            **self.env,
        }
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "konsul"], env=env, stdout=log, stderr=log, cwd=REPO
        )
        log.close()
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"konsul exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            status, _, _ = self.call("GET", self.ready_path, timeout=1.0)
        except OSError:
            return False
        return status == 200

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        return self.call(method, path, body)
