"""The two systems under test, started the same way: three members on loopback, fsync on,
data directories side by side on one filesystem; with ``certs``, both with TLS on the client API
and mutual TLS between members (certificates from one CA, ``tests.certs``)."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.certs import CertDir
from tests.cluster_harness import LocalCluster
from tests.processes import wait_until


def post_json(
    url: str, body: Any, timeout: float = 2.0, context: ssl.SSLContext | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------- etcd


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    root: Path
    base_port: int = 23790
    members: list[EtcdMember] = field(default_factory=list)
    certs: CertDir | None = None  # TLS: --cert-file etc. for clients, --peer-* between members

    def __post_init__(self) -> None:
        scheme = "https" if self.certs else "http"
        for i in range(1, 4):
            self.members.append(
                EtcdMember(
                    f"e{i}", self.base_port + i, self.base_port + 10 + i, self.root / f"e{i}",
                    scheme=scheme,
                )
            )

    @property
    def context(self) -> ssl.SSLContext | None:
        return self.certs.client_context() if self.certs else None

    def _tls_flags(self, m: EtcdMember) -> list[str]:
        if self.certs is None:
            return []
        cert, key = self.certs.member(m.name, ["127.0.0.1"])
        ca = str(self.certs.ca_file)
        # No --trusted-ca-file on the client side: etcd 3.4 takes it to mean "require client
        # certificates", which wrk cannot present. Konsul runs without KONSUL_TLS_VERIFY_INCOMING
        # to match: both serve HTTPS to clients, both speak mutual TLS between members.
        return [
            "--cert-file", str(cert), "--key-file", str(key),
            "--peer-cert-file", str(cert), "--peer-key-file", str(key),
            "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
        ]

    def _start_member(self, m: EtcdMember, state: str) -> None:
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        log = open(self.root / f"{m.name}.log", "ab")  # noqa: SIM115 - owned by the child
        m.proc = subprocess.Popen(
            [
                "etcd",
                "--name",
                m.name,
                "--data-dir",
                str(m.data_dir),
                "--listen-client-urls",
                m.url,
                "--advertise-client-urls",
                m.url,
                "--listen-peer-urls",
                m.peer_url,
                "--initial-advertise-peer-urls",
                m.peer_url,
                "--initial-cluster",
                cluster,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "konsul-bench",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                *self._tls_flags(m),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()

    def start(self) -> EtcdCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            self._start_member(m, "new")
        wait_until(lambda: self.leader() is not None, 30, "an etcd leader")
        return self

    def restart(self, m: EtcdMember) -> None:
        self._start_member(m, "existing")

    def status(self, m: EtcdMember) -> dict[str, Any] | None:
        try:
            code, body = post_json(m.url + "/v3/maintenance/status", {}, timeout=1,
                                   context=self.context)
        except OSError:
            return None
        return body if code == 200 else None

    def leader(self) -> EtcdMember | None:
        for m in self.members:
            if not m.alive():
                continue
            st = self.status(m)
            if st and st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return m
        return None

    def followers(self) -> list[EtcdMember]:
        leader = self.leader()
        return [m for m in self.members if m is not leader and m.alive()]

    def put(self, m: EtcdMember, key: str, value: str, timeout: float = 0.5) -> bool:
        body = {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value.encode()).decode(),
        }
        try:
            code, _ = post_json(m.url + "/v3/kv/put", body, timeout=timeout,
                                context=self.context)
        except OSError:
            return False
        return code == 200

    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None and m.alive()]

    def db_size(self) -> int:
        st = self.status(self.members[0]) or {}
        return int(st.get("dbSize", 0))

    def stop(self) -> None:
        for m in self.members:
            if m.alive() and m.proc is not None:
                m.proc.send_signal(signal.SIGTERM)
                m.proc.wait(timeout=30)


# ----------------------------------------------------------------------------------- Konsul


def konsul_cluster(root: Path, certs: CertDir | None = None) -> LocalCluster:
    return LocalCluster(root, size=3, certs=certs)


def konsul_put(
    url: str, key: str, value: str, timeout: float = 0.5, context: ssl.SSLContext | None = None
) -> bool:
    req = urllib.request.Request(
        f"{url}/kv/{key}", data=json.dumps({"value": value}).encode(), method="PUT"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status == 200
    except (urllib.error.HTTPError, OSError):
        return False


def first_accepted(attempt: Any, timeout: float = 15.0) -> float:
    """Seconds until ``attempt()`` first returns True (polled as fast as it answers)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if attempt():
            return time.monotonic() - started
        time.sleep(0.002)
    return float("inf")


def fdatasync_probe(directory: Path, rounds: int = 200) -> float:
    """Median seconds of a 4 KiB write + fdatasync on the data directory's filesystem."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    times = []
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return times[len(times) // 2]
