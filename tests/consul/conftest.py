"""Shared by the ``/v1`` tests: one standalone node and one three-node cluster for the package.

Both are real ``konsul`` processes on 127.0.0.0/8. Tests never assume a clean store: each uses
keys and service names of its own (``unique``). Tests that move leadership find the leader
again (``cluster.leader()``) rather than remembering it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import LocalCluster
from tests.processes import KonsulProcess


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def index(self) -> int:
        return int(self.headers["X-Consul-Index"])


def call(
    method: str,
    url: str,
    body: bytes | str | Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Reply:
    """One HTTP request as a Consul client sends it: a raw body (JSON-encoded unless it is
    bytes or text), any status returned rather than raised, redirects not followed."""
    if body is not None and not isinstance(body, bytes | str):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.headers, err.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="package")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KonsulProcess]:
    node = KonsulProcess(Path(tmp_path_factory.mktemp("consul-standalone")) / "node")
    try:
        node.start()
        yield node
    finally:
        node.kill()


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("consul-cluster"), size=3)
    try:
        c.start()
        yield c
    finally:
        c.stop()
