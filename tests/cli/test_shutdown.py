"""SIGTERM with blocking reads outstanding: they are answered at once and the node exits
promptly, instead of holding the shutdown for the rest of their wait."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from tests.cli.conftest import KonsulProcess
from tests.processes import http


def test_sigterm_answers_blocking_reads_and_exits_promptly(tmp_path: Path) -> None:
    proc = KonsulProcess(tmp_path)
    try:
        proc.wait_healthy()
        code, _, written = http("PUT", f"http://{proc.address}/kv/held", {"value": "v"})
        assert code == 200
        answers: list[Any] = []

        def watch() -> None:
            url = f"http://{proc.address}/kv/held?index={written['modify_index']}&wait=5m"
            answers.append(http("GET", url, timeout=60))

        watchers = [threading.Thread(target=watch) for _ in range(3)]
        for w in watchers:
            w.start()
        time.sleep(0.5)
        assert not answers, "the reads must be held until something happens"
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        for w in watchers:
            w.join(30)
        assert proc.proc.wait(30) == 0
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
        assert len(answers) == 3
        for code, headers, body in answers:
            assert (code, body["value"]) == (200, "v")
            assert headers["X-Konsul-Index"] == str(written["modify_index"])
    finally:
        proc.stop()
