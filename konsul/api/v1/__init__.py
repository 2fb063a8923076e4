"""Consul's ``/v1`` HTTP API, so that unmodified Consul clients work against Konsul.

A sub-application mounted at ``/v1``, one module per resource (kv, txn, agent, catalog,
health, status) on the same node and store as the native API. What it shares:

- ``edge``: Consul's text errors and status codes (the native API keeps its JSON errors);
- ``query``: consistency modes, blocking queries and the ``X-Consul-*`` read headers;
- ``commit``: writes applied through the leader from any member (forwarded, never a 307);
- ``shapes``: Consul's JSON shapes and the synthetic Consul nodes Konsul's members stand for;
- ``definition``: Consul service and check definitions as Konsul instances.

``docs/consul-compat.md`` lists every endpoint and parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from konsul.api.acl import install_guard
from konsul.api.http import APP_MAX_SIZE, NODE
from konsul.api.v1 import agent, catalog, health, kv, status, txn
from konsul.api.v1.edge import consul_errors

if TYPE_CHECKING:
    from konsul.node import Node

PREFIX = "/v1"


def create_v1_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[consul_errors], client_max_size=APP_MAX_SIZE)
    app[NODE] = node
    install_guard(app, node)  # inside consul_errors: a denial is Consul's text 403
    for module in (kv, txn, agent, catalog, health, status):
        module.add_routes(app)
    return app


__all__ = ["PREFIX", "create_v1_app"]
