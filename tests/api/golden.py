"""Byte-for-byte answers of a standalone node to a fixed sequence of requests.

``tests/api/golden_answers.json`` holds what the node answered when it was recorded; the test
(``test_golden.py``) replays the same raw requests on a fresh node and compares the raw answers,
status line, every header in order, and body, but for the ``Date`` and ``Server`` headers, the
request id of answers to unparseable requests and the cluster id (random by design).

Re-record only for an intended change of the HTTP contract:
``.venv/bin/python -m tests.api.golden > tests/api/golden_answers.json``

This module imports nothing from ``tests`` so that it can also replay against another checkout.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from konsul import config
from konsul.api import AppRunner, create_app
from konsul.node import Node

CHECK = {"name": "web", "id": "web-1", "address": "127.0.0.1", "port": 8080, "tags": ["v1"],
         "meta": {"zone": "a"}, "ttl": "10m", "checks": [{"ttl": "30s"}, {"ttl": "1m", "id": "c2"}]}

# (method, path, headers, body): body is a JSON value, or bytes sent as they are.
REQUESTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/kv/missing", {}, None),
    ("PUT", "/kv/a", {}, {"value": "1"}),
    ("PUT", "/kv/a?cas=0", {}, {"value": "2"}),
    ("PUT", "/kv/a", {}, {"value": "2", "cas": 999}),
    ("PUT", "/kv/b", {}, {"value": "two", "flags": 5}),
    ("POST", "/kv/dir/c", {}, {"value": "é\u2603"}),
    ("PUT", "/kv/chunked", {"Transfer-Encoding": "chunked"}, b'{"value": "c"}'),
    ("PUT", "/kv/expect", {"Expect": "100-continue"}, {"value": "e"}),
    ("PUT", "/kv/empty", {}, b""),
    ("PUT", "/kv/a", {}, b"{not json"),
    ("PUT", "/kv/a", {}, ["a list"]),
    ("PUT", "/kv/a", {}, {"value": "v", "colour": "red"}),
    ("PUT", "/kv/a", {}, {"flags": 1}),
    ("PUT", "/kv/a", {}, {"value": 5}),
    ("PUT", "/kv/a/../b", {}, {"value": "v"}),
    ("PUT", "/kv/big", {}, {"value": "x" * (512 * 1024 + 1)}),
    ("GET", "/kv/a", {}, None),
    ("GET", "/kv/a?consistent", {}, None),
    ("GET", "/kv/a?stale&consistent", {}, None),
    ("GET", "/kv/a?index=1&wait=1ms", {}, None),
    ("GET", "/kv/a?index=x", {}, None),
    ("GET", "/kv/dir%2Fc", {}, None),
    ("GET", "/kv/?prefix=", {}, None),
    ("GET", "/kv/?keys&separator=/", {}, None),
    ("GET", "/kv/?prefix=/bad", {}, None),
    ("HEAD", "/kv/a", {}, None),
    ("PATCH", "/kv/a", {}, None),
    ("DELETE", "/kv/a?cas=999", {}, None),
    ("DELETE", "/kv/b", {}, None),
    ("DELETE", "/kv/", {}, None),
    ("DELETE", "/kv/a?cas=1&recurse", {}, None),
    ("POST", "/txn", {}, {"ops": [{"verb": "set", "key": "t1", "value": "1"},
                                  {"verb": "get", "key": "a"},
                                  {"verb": "check-index", "key": "nope", "index": 0}]}),
    ("POST", "/txn", {}, {"ops": [{"verb": "cas", "key": "t1", "value": "2", "index": 1},
                                  {"verb": "get", "key": "gone"}]}),
    ("POST", "/txn", {}, {"ops": [{"verb": "explode", "key": "t1"}]}),
    ("POST", "/txn", {}, {"ops": []}),
    ("PUT", "/register", {}, CHECK),
    ("PUT", "/register", {}, {"name": "db", "checks": [{"ttl": "1s", "http": "http://x"}]}),
    ("PUT", "/register", {}, {"name": "other", "checks": [{"id": "c2", "ttl": "1s"}]}),
    ("GET", "/services", {}, None),
    ("GET", "/services?tag=v1&meta.zone=a&passing", {}, None),
    ("GET", "/services/web", {}, None),
    ("GET", "/services/none", {}, None),
    ("GET", "/health/checks", {}, None),
    ("GET", "/health/service/web", {}, None),
    ("GET", "/health/service/none", {}, None),
    ("PUT", "/health/check/service:web-1:1", {}, {"status": "passing", "output": "fine"}),
    ("PUT", "/health/check/nope", {}, {"status": "passing"}),
    ("PUT", "/health/check/c2", {}, {"status": "sideways"}),
    ("PUT", "/heartbeat/web-1", {}, None),
    ("PUT", "/heartbeat/nope", {}, None),
    ("GET", "/services/web", {}, None),
    ("DELETE", "/deregister/nope", {}, None),
    ("GET", "/export", {}, None),
    ("POST", "/import", {}, {"version": 1, "kv": [{"key": "i1", "value": "v"}],
                             "services": [{"name": "imp"}]}),
    ("POST", "/import", {}, {"version": 2}),
    ("POST", "/import", {}, {"services": [{"name": "x", "checks": [{"id": "c2", "ttl": "1s"}]}]}),
    ("DELETE", "/deregister/web-1", {}, None),
    ("GET", "/cluster/status", {}, None),
    ("GET", "/cluster/leader", {}, None),
    ("GET", "/cluster/peers", {}, None),
    ("POST", "/cluster/join", {}, {"node_id": "n2", "address": "127.0.0.2:7000"}),
    ("POST", "/cluster/join", {}, {"node_id": "n2"}),
    ("DELETE", "/cluster/leave/n2", {}, None),
    ("POST", "/cluster/transfer-leadership", {}, None),
    ("POST", "/cluster/bootstrap", {}, None),
    ("POST", "/cluster/snapshot", {}, None),
    ("GET", "/health", {}, None),
    ("GET", "/health/live", {}, None),
    ("GET", "/health/ready", {}, None),
    ("GET", "/nowhere", {}, None),
    ("DELETE", "/kv/?recurse", {}, None),
    ("GET", "/kv/?prefix=", {}, None),
]

# Requests aiohttp cannot parse: answered before any handler, with a random request id.
MALFORMED: list[bytes] = [
    b"BLAH /kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /kv/a HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /kv/a HTTP/9.9\r\nHost: x\r\n\r\n",
]

_DATE = re.compile(rb"\r\nDate: [^\r]*")
_SERVER = re.compile(rb"\r\nServer: [^\r]*")
_RANDOM_ID = re.compile(rb"\r\nX-Request-ID: [0-9a-f]{32}\r\n")
_CLUSTER_ID = re.compile(rb'"cluster_id":"[0-9a-f-]{36}"')  # random: made at bootstrap


def raw_request(method: str, path: str, headers: dict[str, str], body: Any, rid: str) -> bytes:
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"X-Request-ID: {rid}",
             "Connection: close"]
    if body is not None and not isinstance(body, bytes):
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if headers.get("Transfer-Encoding") == "chunked":
        data = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def exchange(port: int, request: bytes) -> str:
    """The whole answer to one request on its own connection, with the varying parts masked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    answer = _DATE.sub(b"\r\nDate: <date>", answer)
    answer = _SERVER.sub(b"\r\nServer: <server>", answer)
    answer = _RANDOM_ID.sub(b"\r\nX-Request-ID: <random>\r\n", answer)
    answer = _CLUSTER_ID.sub(b'"cluster_id":"<random>"', answer)
    return answer.decode("utf-8", "backslashreplace")


async def replay(data_dir: Path) -> list[dict[str, str]]:
    settings = config.load({"KONSUL_DATA_DIR": str(data_dir), "KONSUL_HOST": "127.0.0.1",
                            "KONSUL_RAFT_NODE_ID": "golden"})
    node = Node(settings)
    await node.start()
    while not node.is_ready():
        await asyncio.sleep(0.005)
    runner = AppRunner(create_app(node))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out: list[dict[str, str]] = []
    try:
        for i, (method, path, headers, body) in enumerate(REQUESTS):
            request = raw_request(method, path, headers, body, f"golden-{i}")
            out.append({"request": f"{method} {path}", "answer": await exchange(port, request)})
        for request in MALFORMED:
            out.append({"request": request.decode().splitlines()[0],
                        "answer": await exchange(port, request)})
    finally:
        await runner.cleanup()
        await node.stop()
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        answers = asyncio.run(replay(Path(tmp)))
    json.dump(answers, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
