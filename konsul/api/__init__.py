"""Konsul's HTTP API (aiohttp): ``create_app(node)``.

One module per resource (kv, txn, services, health, cluster, backup, data, metrics, and ui: the
web UI), and Consul's ``/v1`` surface as a sub-application of its own (``konsul.api.v1``);
cross-cutting concerns in two middlewares (metrics, errors), a guard that refuses cross-site
writes (run by the full app and by the fast path alike) and a response hook
(``X-Request-ID``); blocking reads are released when the app shuts down. Serve it with
``konsul.api.AppRunner`` (JSON even for unparseable requests, handlers cancelled when their
client hangs up). ``docs/api.md`` documents every endpoint.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from konsul.api import (
    acl,
    backup,
    cluster,
    data,
    encoded,
    fastpath,
    health,
    kv,
    metrics,
    services,
    txn,
    ui,
)
from konsul.api.crosssite import refuse_cross_site
from konsul.api.http import APP_MAX_SIZE, NODE, STOPPING
from konsul.api.middlewares import (
    add_request_id,
    error_middleware,
    init_metrics_cache,
    metrics_middleware,
)
from konsul.api.runner import AppRunner, Site
from konsul.api.v1 import PREFIX as V1_PREFIX
from konsul.api.v1 import create_v1_app

if TYPE_CHECKING:
    from konsul.node import Node


async def _stopping(app: web.Application) -> None:
    app[STOPPING].set()
    app[NODE].watches.release_all()


def create_app(node: Node) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=APP_MAX_SIZE,
    )
    app[NODE] = node
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stopping)
    init_metrics_cache(app)
    encoded.install(app)  # answers shared by the readers of one query (also those of /v1)
    app.on_response_prepare.append(add_request_id)
    for module in (kv, txn, services, health, cluster, backup, data, metrics, ui):
        module.add_routes(app)
    fastpath.add_guard(app, refuse_cross_site)  # run by the full app and the fast path alike
    acl.install(app, node)  # (with ACLs on, its guard middleware turns the fast path off)
    app.add_subapp(V1_PREFIX, create_v1_app(node))
    fastpath.record(app)  # last: the routes the fast path may bypass (see konsul.api.fastpath)
    return app


__all__ = ["AppRunner", "Site", "create_app"]
