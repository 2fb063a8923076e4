"""Writes that a browser sends on behalf of another site are refused (cross-site request forgery).

Why this is needed: Konsul's API takes no cookies and, without ACLs, no credentials at all, so
what keeps a web page the user happens to visit from changing a node on the user's machine or
private network is only that the page cannot make the user's browser send a write.

What a page on another site can make a browser send without asking Konsul first: a form
submission or a "simple" ``fetch`` (GET or POST, a body typed as a form or plain text, no
custom header). PUT and DELETE, a JSON content type or any custom header (``X-Konsul-Token``)
need a CORS preflight, which Konsul never grants (nothing answers ``OPTIONS`` with
``Access-Control-Allow-*``), so those requests never leave the browser. What remains are POSTs:
``POST /kv/<key>``, ``/txn``, ``/import``, the ``/cluster/*`` operations.

Every current browser marks each request with ``Sec-Fetch-Site`` (which the page can neither set
nor change) and a POST with ``Origin``. The rule, the same as Go's ``CrossOriginProtection``:

- GET, HEAD and OPTIONS pass (they change nothing);
- ``Sec-Fetch-Site: same-origin`` (the node's own UI) or ``none`` (typed, a bookmark) passes;
  any other value (``cross-site``, ``same-site``) is refused;
- without ``Sec-Fetch-Site``, an ``Origin`` passes only when it names this very host;
- a request with neither header is not from a browser page (curl, the Python client, another
  member forwarding a write) and passes: no existing client changes anything.

The check is a guard of ``konsul.api.fastpath`` (``add_guard``): it runs before every request
of the full app, as its innermost middleware, and before every request the fast path serves.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from konsul.errors import CrossSiteRequest

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ALLOWED_SITES = frozenset({"same-origin", "none"})


def is_cross_site(request: web.BaseRequest) -> bool:
    """Whether a browser says this request was made by a page of another origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().lower() not in _ALLOWED_SITES
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":  # sandboxed frames, data: and file: pages
        return True
    return urlsplit(origin).netloc.lower() != request.host.lower()


async def refuse_cross_site(request: web.BaseRequest) -> None:
    if request.method not in _SAFE_METHODS and is_cross_site(request):
        raise CrossSiteRequest(
            f"{request.method} {request.path} was sent by a page of another site "
            f"(Origin: {request.headers.get('Origin', 'none')}); browsers may write only from "
            "the node's own UI."
        )
