"""The probe worker: a child process that runs one member's share of HTTP and TCP probes.

It has its own interpreter, event loop and connection pool, so a thousand probes a second
never delay the member's Raft heartbeats (and use the machine's other cores). It knows nothing
of Raft or the store: its parent (``konsul.checks.process``) tells it which checks to probe and
gets every result back; the parent compares with its replica and reports only changes.

Frames both ways are a 4-byte big-endian length and a msgpack array:

- parent → worker, a list of orders: ``["set", id, kind, target, interval, timeout, delay]``
  (start probing, or probe the new definition: first run after ``delay`` seconds, then every
  ``interval``), ``["drop", id]`` (stop);
- worker → parent, a list of results ``[id, status, output]``, gathered for ``FLUSH_SECONDS``.

It dials nothing but the targets it is given. It exits when its stdin closes: when the parent
closes it, and when the parent dies (the kernel closes a dead process's pipes), so a worker
never outlives its member.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct
import sys
from typing import Any

import aiohttp
import msgpack

from konsul.net import probe

MAX_OUTPUT = 4096
FLUSH_SECONDS = 0.05
FLUSH_RESULTS = 512  # a batch this large goes at once
HEADER = struct.Struct(">I")
USER_AGENT = "Konsul Health Check"


def frame(payload: object) -> bytes:
    data: bytes = msgpack.packb(payload)
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's payload; ``asyncio.IncompleteReadError`` at the end of the stream."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return msgpack.unpackb(await reader.readexactly(size))


class Worker:
    def __init__(self, node_id: str, write: Any) -> None:
        self._write = write  # callable taking bytes (the stdout transport's write)
        self._headers = {"User-Agent": f"{USER_AGENT} (member {node_id})"}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._results: list[list[str]] = []
        self._flushed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No per-host limit: one target may be behind many checks.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def order(self, orders: list[list[Any]]) -> None:
        for verb, cid, *definition in orders:
            old = self._probes.pop(cid, None)
            if old is not None:
                old.cancel()
            if verb == "set":
                kind, target, interval, timeout, delay = definition
                self._probes[cid] = asyncio.create_task(
                    self._loop(cid, kind, target, float(interval), float(timeout), float(delay))
                )

    async def _loop(self, cid: str, kind: str, target: str, interval: float, timeout: float,
                    delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            started = asyncio.get_running_loop().time()
            if kind == "http":
                status, output = await self._http(target, timeout)
            else:
                status, output = await _tcp(target, timeout)
            self._results.append([cid, status, output])
            if len(self._results) >= FLUSH_RESULTS:
                self.flush()
            spent = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, interval - spent))

    async def _http(self, url: str, timeout: float) -> tuple[str, str]:
        try:
            async with self.session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
                headers=self._headers,
            ) as resp:
                # The body is left out of the output on purpose: a body that changes on every
                # probe (a timestamp) would otherwise turn each probe into a Raft write.
                output = f"HTTP GET {url}: {resp.status} {resp.reason}"
                if 200 <= resp.status < 300:
                    return "passing", output
                return ("warning" if resp.status == 429 else "critical"), output
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return "critical", f"HTTP GET {url}: {type(exc).__name__}: {exc}"[:MAX_OUTPUT]

    def flush(self) -> None:
        if self._results:
            self._write(frame(self._results))
            self._results = []

    async def flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    async def close(self) -> None:
        for task in self._probes.values():
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()


async def _tcp(address: str, timeout: float) -> tuple[str, str]:
    try:
        await probe(address, timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        return "critical", f"TCP connect {address}: {type(exc).__name__}: {exc}"[:MAX_OUTPUT]
    return "passing", f"TCP connect {address}: Success"


async def serve(node_id: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker(node_id, _write_stdout)
    flusher = asyncio.create_task(worker.flusher())
    try:
        while True:
            worker.order(await read_frame(reader))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the parent closed our stdin, or died: stop
    finally:
        flusher.cancel()
        await worker.close()


def _write_stdout(data: bytes) -> None:
    """Blocking on purpose: a parent slow to read pauses the probes rather than letting results
    pile up here (and a dead parent's pipe raises BrokenPipeError, which ends the worker)."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the member stops us (stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    node_id = sys.argv[1] if len(sys.argv) > 1 else "?"
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency on Linux
        run = asyncio.run
    else:
        run = uvloop.run
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        run(serve(node_id))


if __name__ == "__main__":
    main()
