"""A real node and app on 127.0.0.1, served by an event loop in a background thread.

For tests that drive the API with blocking clients (Hypothesis, the sync ``Client``). Extra
middlewares (added innermost) let a test make the node act as a follower.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from konsul import config
from konsul.api import AppRunner, create_app
from konsul.node import Node


class ThreadedServer:
    def __init__(self, data_dir: Path, middlewares: Sequence[Any] = (), **env: str) -> None:
        self.data_dir = data_dir
        self.env = env
        self.middlewares = list(middlewares)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        settings = config.load(
            {"KONSUL_DATA_DIR": str(self.data_dir), "KONSUL_HOST": "127.0.0.1", **self.env}
        )
        self.node = Node(settings)
        await self.node.start()
        deadline = self.loop.time() + 10
        while not self.node.is_ready():
            if self.loop.time() > deadline:
                raise TimeoutError("node not ready")
            await asyncio.sleep(0.005)
        app = create_app(self.node)
        app.middlewares.extend(self.middlewares)
        self.runner = AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.node.stop()

    def start(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(20), "server did not start"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(20)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp, resp.read()
        finally:
            conn.close()
