"""Clusters of ``Node`` objects in the test's own event loop, on their own loopback addresses.

Real transports, WALs and snapshots, the same ``Node`` as ``python -m konsul`` runs, but no HTTP
server and no process boundary: a test reads each member's core and store directly (e.g. "how
far behind the leader's commit index is this member *right now*"), which a process cluster
cannot show without a race.

    cluster = await InProcessCluster.start(tmp_path, 3)   # http=True: each serves its API too
    leader = cluster.leader()
    await cluster.stop_node("node3"); ...; await cluster.restart_node("node3")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from konsul import config
from konsul.api import AppRunner, Site, create_app
from konsul.errors import Conflict
from konsul.node import Node
from tests.cluster_harness import HTTP_PORT, RAFT_PORT, free_subnet


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _join(leader: Node, node: Node) -> None:
    """Join ``node`` through ``leader``, again while the previous promotion is still pending."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await leader.membership.join(node.me())
            return
        except Conflict:
            assert time.monotonic() < deadline, f"{node.node_id} could not join"
            await asyncio.sleep(0.05)


@dataclass
class InProcessCluster:
    root: Path
    prefix: str
    env: dict[str, str]
    http: bool = False
    nodes: dict[str, Node] = field(default_factory=dict)
    _apis: dict[str, web.AppRunner] = field(default_factory=dict)

    @classmethod
    async def start(cls, root: Path, size: int, *, http: bool = False, **env: str
                    ) -> InProcessCluster:
        cluster = cls(root, free_subnet(), env, http)
        first = await cluster._launch(1, bootstrap=True)
        await until(lambda: first.is_leader and first.is_ready(), 15, "node1 to lead")
        for n in range(2, size + 1):
            node = await cluster._launch(n, bootstrap=False)
            await _join(first, node)
        await until(cluster.converged, 30, "every member to be ready")
        return cluster

    def _settings(self, n: int, bootstrap: bool) -> config.Settings:
        host = f"{self.prefix}.{n}"
        return config.load({
            "KONSUL_DATA_DIR": str(self.root / f"node{n}"),
            "KONSUL_HOST": host,
            "KONSUL_PORT": str(HTTP_PORT),
            "KONSUL_RAFT_ENABLED": "true",
            "KONSUL_RAFT_NODE_ID": f"node{n}",
            "KONSUL_RAFT_BIND_ADDR": f"{host}:{RAFT_PORT}",
            "KONSUL_RAFT_ADVERTISE_ADDR": f"{host}:{RAFT_PORT}",
            "KONSUL_RAFT_BOOTSTRAP": "true" if bootstrap else "false",
            **self.env,
        })

    async def _launch(self, n: int, *, bootstrap: bool) -> Node:
        settings = self._settings(n, bootstrap)
        node = Node(settings)
        await node.start()
        self.nodes[node.node_id] = node
        if self.http:  # as ``python -m konsul`` serves it
            runner = AppRunner(create_app(node), access_log=None, handle_signals=False)
            await runner.setup()
            await Site(runner, settings.host, settings.port).start()
            self._apis[node.node_id] = runner
        return node

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.started]

    def leader(self) -> Node:
        leaders = [n for n in self.running() if n.is_leader]
        assert len(leaders) == 1, f"leaders: {[n.node_id for n in leaders]}"
        return leaders[0]

    def converged(self) -> bool:
        running = self.running()
        leaders = [n for n in running if n.is_leader]
        return (
            len(leaders) == 1
            and all(n.is_ready() and n.core.leader_id == leaders[0].node_id for n in running)
            and all(
                n.store.last_applied == leaders[0].store.last_applied for n in running
            )
        )

    async def stop_node(self, node_id: str) -> None:
        api = self._apis.pop(node_id, None)
        if api is not None:
            await api.cleanup()
        await self.nodes[node_id].stop()

    async def restart_node(self, node_id: str) -> Node:
        n = int(node_id.removeprefix("node"))
        return await self._launch(n, bootstrap=False)

    async def close(self) -> None:
        for node in self.running():
            await self.stop_node(node.node_id)
