"""A real standalone Node (one-voter Raft group, WAL and snapshots in a tmp dir) behind the app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from konsul import config
from konsul.api import AppRunner, create_app
from konsul.node import Node

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def settings_for(data_dir: Path, **env: str) -> config.Settings:
    return config.load({"KONSUL_DATA_DIR": str(data_dir), "KONSUL_PORT": "8500", **env})


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(settings_for(tmp_path))
    await n.start()
    await wait_until(n.is_ready)
    yield n
    await n.stop()


class KonsulTestServer(TestServer):
    """aiohttp's test server with Konsul's own runner (JSON protocol errors, the fast path), so
    the tests see what a client of ``python -m konsul`` sees."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return AppRunner(self.app, **kwargs)


@pytest.fixture
async def client(node: Node, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(KonsulTestServer(create_app(node)))


async def body_of(resp: Any, status: int | None = None) -> Any:
    """The JSON body of a response, asserting it is JSON (and the status, when given)."""
    text = await resp.text()
    if status is not None:
        assert resp.status == status, f"{resp.status} != {status}: {text}"
    assert resp.content_type == "application/json", f"not JSON: {resp.content_type} {text[:200]}"
    return await resp.json()


async def error_of(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An error answer: the status, the documented shape, and the machine code when given."""
    body = await body_of(resp, status)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    assert resp.headers.get("X-Request-ID"), "every response carries X-Request-ID"
    return body
