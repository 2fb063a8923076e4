"""Detached processes with pid files: the plane's components outlive `make k8s-up`, and
`make k8s-down` (or the next `up` after a crash) finds them again by pid file, trusting a pid
only while /proc says it still runs the same command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.plane import names


@dataclass
class Daemon:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return names.RUN / f"{self.name}.json"

    @property
    def logfile(self) -> Path:
        return names.LOGS / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if our process still runs (not a zombie, not a reused pid), else None."""
        record = self._record()
        if record is None or not alive(record["pid"], record["argv"]):
            return None
        return int(record["pid"])

    def current(self) -> bool:
        """Running, and with the command line we would start it with today."""
        record = self._record()
        return record is not None and record["argv"] == self.argv and self.pid() is not None

    def _record(self) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        return record

    def start(self) -> int:
        names.RUN.mkdir(parents=True, exist_ok=True)
        names.LOGS.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, **self.env}, cwd=names.REPO)
        self.pidfile.write_text(json.dumps({"pid": proc.pid, "argv": self.argv}))
        # Popen returns once exec has begun, but the kernel sets the new command line a moment
        # later (/proc/<pid>/cmdline reads empty in between, often for a large Go program), and
        # pid() trusts a pid only by its command line: wait for it, or `up` takes a daemon that
        # just started for one that exited.
        deadline = time.monotonic() + 10
        while (proc.poll() is None and not alive(proc.pid, self.argv)
               and time.monotonic() < deadline):
            time.sleep(0.005)
        return proc.pid

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``. True if it was running."""
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout)
        self.pidfile.unlink(missing_ok=True)
        return pid is not None


def recorded() -> list[Daemon]:
    """Every daemon with a pid file, whoever started it (`down` stops them all)."""
    found = []
    for pidfile in sorted(names.RUN.glob("*.json")) if names.RUN.exists() else []:
        try:
            found.append(Daemon(pidfile.stem, json.loads(pidfile.read_text())["argv"]))
        except (OSError, ValueError, KeyError):
            pidfile.unlink(missing_ok=True)
    return found


def alive(pid: int, argv: list[str] | None = None) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return argv is None or [c.decode() for c in cmdline] == argv


def terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while alive(pid):
            time.sleep(0.05)
