"""A small asyncio client for the API server (aiohttp, client-certificate TLS) and an informer
that keeps a list of objects current with list + watch. Enough for the kubelet and the DNS
server; the tests use kubectl."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from e2e.plane import names, pki

Obj = dict[str, Any]
log = logging.getLogger("kube")


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{status}: {message}")
        self.status = status


class Kube:
    def __init__(self, client: pki.Pair) -> None:
        self.ssl = ssl.create_default_context(cafile=str(pki.ca().cert))
        self.ssl.load_cert_chain(str(client.cert), str(client.key))
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=names.API_URL, connector=aiohttp.TCPConnector(ssl=self.ssl),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None,
                      params: dict[str, str] | None = None,
                      content_type: str = "application/json", timeout: float = 30) -> Obj:
        data = json.dumps(body) if body is not None else None
        async with self.session.request(
                method, path, data=data, params=params, headers={"Content-Type": content_type},
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            text = await response.text()
            decoded: Any = json.loads(text) if text.startswith("{") else text
            if response.status >= 400:
                raise ApiError(response.status, decoded)
            return decoded if isinstance(decoded, dict) else {}

    async def get(self, path: str, **params: str) -> Obj:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body,
                                  content_type="application/merge-patch+json")

    async def delete(self, path: str, body: Obj | None = None) -> Obj:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, resource_version: str,
                    params: dict[str, str]) -> AsyncIterator[tuple[str, Obj]]:
        query = {**params, "watch": "1", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": "240"}
        async with self.session.get(path, params=query,
                                    timeout=aiohttp.ClientTimeout(sock_read=300)) as response:
            if response.status >= 400:
                raise ApiError(response.status, await response.text())
            async for line in response.content:
                if line.strip():
                    event = json.loads(line)
                    yield event["type"], event["object"]


def key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Informer:
    """Keeps ``items`` (key -> object) equal to what the API server holds for ``path``; calls
    ``on_change(key, obj_or_None)`` after every change. Relists after an expired watch."""

    def __init__(self, kube: Kube, path: str,
                 on_change: Callable[[str, Obj | None], Awaitable[None]], **params: str) -> None:
        self.kube, self.path, self.params, self.on_change = kube, path, params, on_change
        self.items: dict[str, Obj] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                listed = await self.kube.get(self.path, **self.params)
                fresh = {key(o): o for o in listed.get("items", [])}
                for gone in set(self.items) - set(fresh):
                    del self.items[gone]
                    await self.on_change(gone, None)
                for k, obj in fresh.items():
                    if self.items.get(k, {}).get("metadata", {}).get("resourceVersion") != \
                            obj["metadata"].get("resourceVersion"):
                        self.items[k] = obj
                        await self.on_change(k, obj)
                self.synced.set()
                version = listed["metadata"]["resourceVersion"]
                while True:
                    async for kind, obj in self.kube.watch(self.path, version, self.params):
                        if kind == "ERROR":
                            raise ApiError(obj.get("code", 500), obj)
                        version = obj["metadata"]["resourceVersion"]
                        if kind == "BOOKMARK":
                            continue
                        k = key(obj)
                        if kind == "DELETED":
                            self.items.pop(k, None)
                            await self.on_change(k, None)
                        else:
                            self.items[k] = obj
                            await self.on_change(k, obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an expired version (410), the API server restarting...
                log.info("%s: relisting after %s", self.path, exc)
                await asyncio.sleep(1)
