"""``GET /metrics``: the node's Prometheus registry in the text exposition format."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from konsul.api.http import node_of


async def metrics(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    # Store sizes are sampled at scrape time: cheaper than updating gauges on every write.
    node.metrics.kv_keys.set(node.store.kv_count)
    node.metrics.services.set(node.store.service_count)
    node.metrics.blocking_reads_parked.set(node.watches.parked)
    body = generate_latest(node.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
