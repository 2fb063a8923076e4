"""The member's side of its probe worker (``konsul.checks.worker``): start it, feed it orders,
hand its results on, restart it when it dies, stop and reap it with the member.

A worker that crashes is started again after ``RESTART_DELAY`` (doubling to ``MAX_RESTART_DELAY``
while it keeps crashing); ``on_start`` runs each time so that the new worker is given the
member's whole share again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from konsul.checks.worker import frame, read_frame
from konsul.logs import event

log = logging.getLogger("konsul.checks")

RESTART_DELAY = 0.2
MAX_RESTART_DELAY = 5.0
STOP_WAIT = 2.0  # a worker told to stop (stdin closed) gets this long before SIGKILL
RUNNING_WELL = 10.0  # a worker that ran this long resets the restart delay


class ProbeWorker:
    def __init__(
        self,
        node_id: str,
        on_start: Callable[[], None],
        on_results: Callable[[list[list[str]]], None],
    ) -> None:
        self._node_id = node_id
        self._on_start = on_start
        self._on_results = on_results
        self._proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def send(self, orders: list[list[Any]]) -> None:
        """Orders for the running worker; dropped when there is none (the next one is given
        the whole share when it starts)."""
        proc = self._proc
        if orders and proc is not None and proc.stdin is not None and proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                proc.stdin.write(frame(orders))

    async def run(self) -> None:
        """Keep a worker running until cancelled; then stop and reap it."""
        delay = RESTART_DELAY
        try:
            while True:
                started = asyncio.get_running_loop().time()
                await self._run_once()
                ran = asyncio.get_running_loop().time() - started
                delay = RESTART_DELAY if ran > RUNNING_WELL else min(delay * 2, MAX_RESTART_DELAY)
                event(log, logging.WARNING, "probe worker exited; starting another",
                      code=self._proc.returncode if self._proc else None, after_s=delay)
                await asyncio.sleep(delay)
        finally:
            await self._stop()

    async def _run_once(self) -> None:
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "konsul.checks.worker", self._node_id,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=2**26,
        )
        self.starts += 1
        self._on_start()
        assert proc.stdout is not None
        try:
            while True:
                self._on_results(await read_frame(proc.stdout))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await proc.wait()

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
