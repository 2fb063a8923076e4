"""``make run`` starts a node that answers ``GET /health`` (the README's first command)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.processes import REPO, free_port, http, wait_until


def test_make_run_starts_a_healthy_node(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KONSUL_HOST": "127.0.0.1",
        "KONSUL_PORT": str(port),
        "KONSUL_DATA_DIR": str(tmp_path / "data"),
    }
    log = open(tmp_path / "make-run.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:

        def healthy() -> object:
            assert proc.poll() is None, (tmp_path / "make-run.log").read_text()
            try:
                status, _, body = http("GET", f"http://127.0.0.1:{port}/health", timeout=1)
            except OSError:
                return None
            return body if status == 200 else None

        body = wait_until(healthy, 60, "make run to serve /health")
        assert body["status"] == "healthy"
        assert body["cluster"]["enabled"] is False
        assert (tmp_path / "data" / "raft" / "wal").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
