"""The two systems under test, started the same way: three members on loopback, fsync on,
data directories side by side on one filesystem."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster_harness import LocalCluster
from tests.processes import wait_until


def post_json(url: str, body: Any, timeout: float = 2.0) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    root: Path
    base_port: int = 23790
    members: list[EtcdMember] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(1, 4):
            self.members.append(
                EtcdMember(
                    f"e{i}", self.base_port + i, self.base_port + 10 + i, self.root / f"e{i}"
                )
            )

    def _start_member(self, m: EtcdMember, state: str) -> None:
        cluster = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in self.members)
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
                f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{m.peer_port}",
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
            code, body = post_json(m.url + "/v3/maintenance/status", {}, timeout=1)
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
            code, _ = post_json(m.url + "/v3/kv/put", body, timeout=timeout)
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


def konsul_cluster(root: Path) -> LocalCluster:
    return LocalCluster(root, size=3)


def konsul_put(url: str, key: str, value: str, timeout: float = 0.5) -> bool:
    req = urllib.request.Request(
        f"{url}/kv/{key}", data=json.dumps({"value": value}).encode(), method="PUT"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
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
