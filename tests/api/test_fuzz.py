"""Random and malformed requests never get a 5xx or a non-JSON body, and the node keeps serving.

The app runs on a real socket in a background thread (its own event loop and a real standalone
node, ``tests.api.server``), so Hypothesis drives it with plain blocking HTTP requests.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.server import ThreadedServer as Server

ROOTS = ["kv", "txn", "register", "deregister", "heartbeat", "services", "health", "cluster",
         "export", "import", "metrics", ""]
SEGMENTS = ["checks", "service", "check", "live", "ready", "status", "leader", "peers", "join",
            "leave", "snapshot", "transfer-leadership", "bootstrap", "a", "web", "..", ".", ""]
QUERY_NAMES = ["index", "wait", "cas", "recurse", "keys", "separator", "prefix", "consistent",
               "stale", "tag", "name", "meta.zone", "meta.", "passing", "flags"]
# Already percent-encoded: invalid UTF-8, NUL, an encoded slash, an encoded '..', a lone '%'.
RAW_SEGMENTS = ["%FF%FE", "%00", "a%2Fb", "%2E%2E", "%", "%zz", "%C3%28"]
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND", "FOO"]
SHORT_WAITS = ["0s", "1ms", "10ms", "bogus", "-1s", "", "1"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["value", "flags", "cas", "ops", "name", "id", "port", "tags",
                               "meta", "checks", "ttl", "status", "output", "node_id",
                               "address", "http_address", "version", "kv", "services", "verb",
                               "key", "index", "http", "tcp", "interval"])
plausible_objects = st.dictionaries(field_names, json_values, max_size=6)
ops = st.lists(st.fixed_dictionaries({}, optional={
    "verb": st.sampled_from(["set", "delete", "cas", "delete-cas", "get", "check-index", "x"]),
    "key": st.text(max_size=10), "value": json_values, "index": json_values,
}), max_size=5).map(lambda o: {"ops": o})
bodies = st.one_of(
    st.none(),
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    plausible_objects.map(lambda v: json.dumps(v).encode()),
    ops.map(lambda v: json.dumps(v).encode()),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, dict[str, str]]:
    method = draw(st.sampled_from(METHODS))
    parts = [draw(st.sampled_from(ROOTS) | st.text(max_size=6))]
    parts += draw(st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=8), max_size=3))
    encoded = [urllib.parse.quote(p, safe="") for p in parts]
    if draw(st.booleans()):
        encoded.insert(draw(st.integers(1, len(encoded))), draw(st.sampled_from(RAW_SEGMENTS)))
    path = "/" + "/".join(encoded)
    if draw(st.booleans()):
        path += "/"
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | st.text(max_size=5),
                                    st.text(max_size=8)), max_size=4))
    if any(name == "index" for name, _ in query):
        # Never a real long poll: a blocking read would only stall the campaign.
        query = [(n, v) for n, v in query if n != "wait"]
        query.append(("wait", draw(st.sampled_from(SHORT_WAITS))))
    if query:
        path += "?" + urllib.parse.urlencode(query)
    body = draw(bodies)
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if draw(st.booleans()):
        headers["X-Request-ID"] = draw(st.text(alphabet="abcdef0123456789-", max_size=40))
    return method, path, body, headers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz")).start()
    yield srv
    srv.stop()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(req=requests())
def test_random_requests_get_json_and_no_5xx(server: Server, req: Any) -> None:
    method, path, body, headers = req
    status, resp, raw = server.request(method, path, body, headers)
    assert status < 500 or (status == 503 and path.startswith("/cluster")), (status, raw[:300])
    assert resp.getheader("X-Request-ID"), "every response carries a request id"
    if method == "HEAD":
        return
    ctype = resp.getheader("Content-Type", "")
    if path.split("?")[0] == "/metrics" and status == 200:
        assert ctype.startswith("text/plain")
        return
    assert ctype.startswith("application/json"), (status, ctype, raw[:300])
    decoded = json.loads(raw)
    if status >= 400:
        assert isinstance(decoded, dict)
        assert isinstance(decoded["error"], str) and isinstance(decoded["message"], str)


def test_node_still_serves_after_the_campaign(server: Server) -> None:
    headers = {"Content-Type": "application/json"}
    status, _, raw = server.request("PUT", "/kv/after/fuzz", b'{"value": "ok"}', headers)
    assert status == 200, raw
    status, _, raw = server.request("GET", "/kv/after/fuzz?consistent")
    assert status == 200 and json.loads(raw)["value"] == "ok"
    status, _, raw = server.request("GET", "/health")
    assert status == 200 and json.loads(raw)["status"] == "healthy"


@pytest.mark.parametrize(
    "raw",
    [
        b"FOO /kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /kv/a HTTP/1.1\r\nBad Header\r\n\r\n",
        b"garbage\r\n\r\n",
        b"GET /kv/a HTTP/9.9\r\n\r\n",
        b"PUT /kv/a HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ],
)
def test_unparseable_requests_get_a_json_400(server: Server, raw: bytes) -> None:
    """Errors aiohttp raises before any middleware runs are JSON too (konsul.api.AppRunner)."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].split()[1] == "400", lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"]
    decoded = json.loads(body)
    assert decoded["error"] == "bad request" and decoded["message"]


def test_a_watcher_that_hangs_up_stops_waiting(server: Server) -> None:
    """With handler cancellation a long poll whose client left is cancelled (counted as 499)
    instead of holding a waiter for the rest of its wait."""
    import socket
    import time

    def hung_up() -> float:
        _, _, raw = server.request("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith("konsul_http_requests_total") and 'status="499"' in line and (
                'route="/kv/{key}"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = hung_up()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /kv/hangup?index=999999&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while hung_up() <= before:
        assert time.monotonic() < deadline, "the abandoned long poll is still waiting"
        time.sleep(0.05)
