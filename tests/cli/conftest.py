"""A real ``konsul`` process (``python -m konsul``) on 127.0.0.1 with a free port and a tmp dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class KonsulProcess:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = data_dir / "konsul.log"
        env = {**os.environ, "KONSUL_HOST": "127.0.0.1", "KONSUL_PORT": str(self.port),
               "KONSUL_DATA_DIR": str(data_dir / "data")}
        env.pop("KONSUL_HTTP_ADDR", None)
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "konsul"], env=env, stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"konsul exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/health", timeout=1) as r:
                    if json.load(r)["status"] == "healthy":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"konsul not healthy in {timeout}s: {self.log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()


@pytest.fixture(scope="session")
def konsul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KonsulProcess]:
    """One node for the whole CLI/client session; tests use their own key prefixes."""
    proc = KonsulProcess(tmp_path_factory.mktemp("konsul"))
    try:
        proc.wait_healthy()
        yield proc
    finally:
        proc.stop()
