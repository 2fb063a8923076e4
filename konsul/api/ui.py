"""``/ui``: the web UI every node serves, and the one route it needs beyond the public API.

The UI is a handful of static files (``konsul/ui/``: HTML, one script, one stylesheet; no build
step, nothing fetched from anywhere else), read once when the app is made and served with a
strict Content-Security-Policy. Those headers go on ``/ui`` answers only: the JSON API and its
fast path are untouched. Everything the pages show they read from the public API, as any client
would, except the cluster overview:

``GET /ui/api/cluster`` is every member's own view of itself (role, term, commit and applied
indices, last contact with the leader, readiness), gathered by this node from each member's
``/cluster/status`` and ``/health/ready`` with a short timeout, so a browser that may reach only
this node sees the whole cluster; a member that does not answer is shown as unreachable. The
caller's token headers go along, so a member shows only what the caller may read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from importlib import resources
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from konsul.api.acl import forward_headers
from konsul.api.http import json_response, node_of
from konsul.errors import NotFound
from konsul.raft.types import Member

if TYPE_CHECKING:
    from konsul.node import Node

# Same-origin everything, no inline script or style, no plugins, no framing, no form posts:
# even a value that slipped past the escaping could not run, load or send anything.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UI_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a node upgrade serves its own UI at once
}
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# What the fan-out waits for one member: a member slower than this is shown as unreachable
# rather than holding up the page, which polls every second.
MEMBER_TIMEOUT = aiohttp.ClientTimeout(total=1.0)
_TOKEN_HEADERS = ("X-Konsul-Token", "X-Consul-Token", "Authorization")

UiFiles = dict[str, tuple[bytes, str]]
_FILES: web.AppKey[UiFiles] = web.AppKey("konsul.ui_files", dict)


def load_files() -> UiFiles:
    """The UI's files by name, with their content types (read once, served from memory)."""
    files: UiFiles = {}
    for entry in resources.files("konsul").joinpath("ui").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


def _file_response(request: web.Request, name: str) -> web.Response:
    found = request.app[_FILES].get(name)
    if found is None:
        raise NotFound(f"No UI file {name!r}.")
    body, content_type = found
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers=UI_HEADERS
    )


async def root(request: web.Request) -> web.StreamResponse:
    """``GET /``: a browser opening the node's address lands on the UI (as Consul's does)."""
    return json_response(
        {"ui": "/ui/"}, status=302, headers={"Location": "/ui/", "Cache-Control": "no-cache"}
    )


async def index(request: web.Request) -> web.StreamResponse:
    if request.path == "/ui":  # relative links in the page need the trailing slash
        return json_response({"ui": "/ui/"}, status=301, headers={"Location": "/ui/"})
    return _file_response(request, "index.html")


async def asset(request: web.Request) -> web.StreamResponse:
    return _file_response(request, request.match_info["name"])


# ---------------------------------------------------------------------------- cluster view


async def cluster(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    status = node.status()
    members = list(status.peers)
    if all(m.id != status.node_id for m in members):  # not (or no longer) in the configuration
        members.append(Member(status.node_id, status.address, False, status.http_address))
    token = {h: request.headers[h] for h in _TOKEN_HEADERS if h in request.headers}
    token.update(forward_headers(request))  # a ?token= too
    peers = node.peer_http
    views = await asyncio.gather(
        *(
            _own_view(node) if m.id == status.node_id
            else remote_view(peers.session, m, token, peers.scheme, peers.ssl())
            for m in members
        )
    )
    body = {
        "node_id": status.node_id,
        "clustered": node.clustered,
        "leader_id": status.leader_id,
        "term": status.term,
        "members": [
            {
                "id": m.id,
                "address": m.address,
                "http_address": m.http_address,
                "voter": m.voter,
                "member": m in status.peers,
                **view,
            }
            for m, view in zip(members, views, strict=True)
        ],
    }
    return json_response(body, headers=UI_HEADERS)


_VIEW_FIELDS = (
    "state", "term", "leader_id", "commit_index", "applied_index", "last_index",
    "last_contact_ms", "catching_up",
)


async def _own_view(node: Node) -> dict[str, Any]:
    status = dataclasses.asdict(node.status())
    view = {name: status[name] for name in _VIEW_FIELDS}
    return {**view, "reachable": True, "ready": node.is_ready(), "error": None}


async def remote_view(
    session: aiohttp.ClientSession,
    member: Member,
    token: dict[str, str],
    scheme: str = "http",
    context: ssl.SSLContext | bool = True,
) -> dict[str, Any]:
    """``scheme`` and ``context``: the cluster's TLS setting (``konsul.peers.PeerHTTP``)."""
    if not member.http_address:
        return {"reachable": False, "error": "no HTTP address known for this member"}
    base = f"{scheme}://{member.http_address}"
    status_answer, ready_answer = await asyncio.gather(
        _ask(session, f"{base}/cluster/status", token, context),
        _ask(session, f"{base}/health/ready", token, context),
    )
    if isinstance(status_answer, str) or isinstance(ready_answer, str):
        reason = status_answer if isinstance(status_answer, str) else ready_answer
        return {"reachable": False, "error": f"no answer from {member.http_address}: {reason}"}
    status_code, status = status_answer
    if status_code != 200 or not isinstance(status, dict):
        message = status.get("message") if isinstance(status, dict) else None
        return {
            "reachable": True,
            "status_code": status_code,
            "error": message or f"/cluster/status answered {status_code}",
        }
    view = {name: status.get(name) for name in _VIEW_FIELDS}
    return {**view, "reachable": True, "ready": ready_answer[0] == 200, "error": None}


async def _ask(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str],
    context: ssl.SSLContext | bool,
) -> tuple[int, Any] | str:
    """A member's answer (status, decoded body), or why there was none."""
    try:
        async with session.get(url, headers=headers, timeout=MEMBER_TIMEOUT,
                               ssl=context) as resp:
            return resp.status, await resp.json(content_type=None)
    except TimeoutError:
        return f"no answer within {MEMBER_TIMEOUT.total:g} s"
    except (aiohttp.ClientError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def add_routes(app: web.Application) -> None:
    app[_FILES] = load_files()
    app.router.add_get("/", root)
    app.router.add_get("/ui", index)
    app.router.add_get("/ui/", index)
    app.router.add_get("/ui/api/cluster", cluster)
    app.router.add_get("/ui/{name}", asset)
