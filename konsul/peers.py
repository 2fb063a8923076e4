"""Node-to-node HTTP: one pooled client session for every call one member makes to another.

Forwarded writes (``api/forward.py``, ``/v1``'s ``commit``), the UI's cluster view, a join's
question to the new server and a removed leader's last ``leave`` all go through ``PeerHTTP``:
one connection pool per node, the scheme every member shares (``https`` with TLS on), and our
TLS client context on every request (read per request: the certificate files may be renewed).
"""

from __future__ import annotations

import ssl
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import aiohttp

# Long enough for a join or a leadership transfer, which the leader answers only once done.
# Each call may pass a shorter one.
TIMEOUT = aiohttp.ClientTimeout(total=60, connect=2)


class ClientTls(Protocol):
    def client(self) -> ssl.SSLContext: ...


class PeerHTTP:
    def __init__(self, scheme: str, tls: ClientTls | None) -> None:
        self.scheme = scheme
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    def url(self, address: str) -> str:
        """The base URL of another member's API."""
        return f"{self.scheme}://{address}"

    def ssl(self) -> ssl.SSLContext | bool:
        """aiohttp's ``ssl`` for a call to another member: our client context, which checks its
        certificate and presents ours (``True``: aiohttp's default, for plain HTTP)."""
        return self._tls.client() if self._tls is not None else True

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session, opened on first use (on the running event loop). Bodies are
        relayed as they came (no decompression): forwarding passes answers on unchanged."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False)
        return self._session

    def request(
        self, method: str, address: str, path: str, **kwargs: Any
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """``session.request`` to ``path`` on the member at ``address`` (an HTTP address)."""
        return self.session.request(method, self.url(address) + path, ssl=self.ssl(), **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
