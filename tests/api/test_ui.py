"""``/ui`` (static files with their headers, the cluster view) and the cross-site write rule.

The browser itself is in ``tests/ui``; here, what the node answers, request by request.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from konsul.api import create_app, fastpath
from konsul.api.ui import CSP, load_files, remote_view
from konsul.node import Node
from konsul.raft.types import Member
from tests.api.conftest import body_of, error_of

Client = Any


async def test_every_ui_file_is_served_with_its_type_and_the_csp(client: Client) -> None:
    files = load_files()
    assert {"index.html", "app.js", "style.css"} <= set(files)
    for name, (content, content_type) in files.items():
        resp = await client.get(f"/ui/{name}")
        assert resp.status == 200, name
        assert resp.content_type == content_type
        assert await resp.read() == content
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
    page = await client.get("/ui/")
    assert page.content_type == "text/html" and b'src="app.js"' in await page.read()


async def test_the_page_loads_nothing_from_elsewhere(client: Client) -> None:
    """No absolute URL in the shipped files: every request the page makes is to this node."""
    for name, (content, _) in load_files().items():
        text = content.decode()
        for scheme in ("http://", "https://", "//cdn", "@import"):
            assert scheme not in text.replace("http://www.w3.org/2000/svg", ""), (name, scheme)
    assert "connect-src 'self'" in CSP and "default-src 'none'" in CSP


async def test_ui_headers_stay_off_the_json_api(client: Client) -> None:
    for path in ("/health", "/kv/?prefix=", "/kv/absent"):
        resp = await client.get(path)
        assert "Content-Security-Policy" not in resp.headers, path
    await client.put("/kv/fast", json={"value": "v"})  # the fast path
    resp = await client.get("/kv/fast")
    assert "Content-Security-Policy" not in resp.headers


async def test_redirects_to_the_ui_and_json_404s(client: Client) -> None:
    for path in ("/", "/ui"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status in (301, 302) and resp.headers["Location"] == "/ui/"
        assert (await body_of(resp))["ui"] == "/ui/"
    for path in ("/ui/nope.js", "/ui/..%2Fnode.py", "/ui/__init__.py"):
        await error_of(await client.get(path), 404, "not found")
    await error_of(await client.post("/ui/app.js"), 405, "method not allowed")


async def test_the_cluster_view_of_a_standalone_node(client: Client, node: Node) -> None:
    body = await body_of(await client.get("/ui/api/cluster"), 200)
    assert body["clustered"] is False
    assert body["leader_id"] == body["node_id"] == node.node_id
    (me,) = body["members"]
    assert me["id"] == node.node_id and me["state"] == "Leader" and me["voter"] is True
    assert me["reachable"] is True and me["ready"] is True and me["error"] is None
    assert me["applied_index"] == node.status().applied_index


async def test_a_member_is_asked_for_its_own_view(client: Client, unused_tcp_port: int) -> None:
    """Another member's row comes from its own /cluster/status; one that does not answer is
    marked unreachable at once rather than waited for."""
    up = Member("up", "", True, f"{client.server.host}:{client.server.port}")
    gone = Member("gone", "127.0.0.1:7999", True, f"127.0.0.1:{unused_tcp_port}")
    async with aiohttp.ClientSession() as session:
        view = await remote_view(session, up, {})
        assert view["reachable"] is True and view["ready"] is True and view["error"] is None
        assert view["state"] == "Leader" and view["applied_index"] > 0
        view = await remote_view(session, gone, {})
        assert view["reachable"] is False
        assert f"127.0.0.1:{unused_tcp_port}" in view["error"]
        view = await remote_view(session, Member("nowhere", "127.0.0.1:7998", True, ""), {})
        assert view["reachable"] is False and "no HTTP address" in view["error"]


# ------------------------------------------------------------------------ cross-site writes


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),  # curl, the Python client, another node
        ({"Sec-Fetch-Site": "same-origin"}, True),  # the node's own UI
        ({"Sec-Fetch-Site": "none"}, True),  # typed into the address bar
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),  # another port of the same host
        ({"Sec-Fetch-Site": "cross-site", "Origin": "SELF"}, False),  # the browser's word wins
        ({"Origin": "SELF"}, True),  # an older browser, same origin
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "null"}, False),  # a sandboxed frame, a file: page
    ],
)
async def test_browser_writes_from_another_site_are_refused(
    client: Client, headers: dict[str, str], allowed: bool
) -> None:
    own = f"http://{client.server.host}:{client.server.port}"
    sent = {k: (own if v == "SELF" else v) for k, v in headers.items()}
    for method, path, body in (
        ("POST", "/kv/csrf", {"value": "x"}),
        ("PUT", "/kv/csrf?cas=0", {"value": "x"}),
        ("POST", "/txn", {"ops": [{"verb": "set", "key": "csrf", "value": "x"}]}),
        ("DELETE", "/kv/csrf", None),
    ):
        resp = await client.request(method, path, json=body, headers=sent)
        if allowed:
            assert resp.status in (200, 409), (method, path, resp.status, await resp.text())
        else:
            answer = await error_of(resp, 403, "cross-site request")
            assert "another site" in answer["message"]
    # Reads are never refused: they change nothing.
    resp = await client.get("/kv/?prefix=", headers=sent)
    assert resp.status == 200


async def test_a_text_plain_form_body_is_refused_from_a_browser(client: Client) -> None:
    """What a forging page would send: a POST form whose text/plain body parses as JSON."""
    form = {"Content-Type": "text/plain", "Origin": "http://evil.example",
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    resp = await client.post("/kv/planted", data=b'{"value": "x="}', headers=form)
    await error_of(resp, 403, "cross-site request")
    await error_of(await client.get("/kv/planted"), 404)


async def test_the_fast_path_survives_the_cross_site_middleware(node: Node) -> None:
    assert fastpath.allowed(create_app(node))
