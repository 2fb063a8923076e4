"""Network partitions for local clusters without root: every node's Raft traffic goes through
a relay that can silently drop it.

Each node binds its Raft port on its own address (``127.a.b.n:7000``) but *advertises* a relay
address (``127.a.b.(100+n):7000``), so every peer connects to the relay. Konsul's Raft
connections are one-way (a sender writes frames, the receiver only reads) and open with a hello
naming the sender, so the relay knows each connection's link ``sender -> node`` and forwards or
drops whole frames per link. ``isolate(node)`` drops every frame to and from that node, the way a
partition that loses packets would (the connections stay open: no reset tells anyone); ``heal()``
forwards again from the next frame. Nothing outside the cluster's own addresses is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

from tests.cluster_harness import RAFT_PORT, ClusterNode, LocalCluster
from tests.processes import http

HELLO_MAGIC = b"KRFT1"  # konsul.raft.transport's wire format
HEADER = struct.Struct(">I")
RELAY_OFFSET = 100


@dataclass
class RelayedNode(ClusterNode):
    """A node whose advertised Raft address is its relay's."""

    relay_addr: str = ""

    @property
    def raft_addr(self) -> str:
        return self.relay_addr

    @property
    def bind_addr(self) -> str:
        return f"{self.host}:{RAFT_PORT}"


@dataclass
class PartitionableCluster(LocalCluster):
    """A ``LocalCluster`` whose Raft links can be cut; ``start()`` starts the relays first."""

    relays: Relays = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.relays = Relays({n.node_id: (n.raft_addr, n.bind_addr) for n in self.relayed()})

    def relayed(self) -> list[RelayedNode]:
        return [n for n in self.nodes if isinstance(n, RelayedNode)]

    def make_node(self, n: int, bootstrap: bool = False) -> ClusterNode:
        base = super().make_node(n, bootstrap)
        relay = f"{self.prefix}.{RELAY_OFFSET + n}:{RAFT_PORT}"
        node = RelayedNode(**{f.name: getattr(base, f.name) for f in fields(base)},
                           relay_addr=relay)
        node.env["KONSUL_RAFT_ADVERTISE_ADDR"] = relay
        # Otherwise the HTTP address peers redirect to would default to the relay's host.
        node.env["KONSUL_HTTP_ADVERTISE_ADDR"] = node.http_addr
        return node

    def join(self, node: ClusterNode, via: ClusterNode | None = None) -> dict[str, Any]:
        """As the harness joins, plus the HTTP address (the leader would guess the relay's)."""
        target = via or self.leader()
        body = {"node_id": node.node_id, "address": node.raft_addr,
                "http_address": node.http_addr}
        code, _, answer = http("POST", target.url + "/cluster/join", body, timeout=40)
        assert code == 200, f"join {node.node_id} -> {code} {answer}"
        return dict(answer)

    def start(self) -> PartitionableCluster:
        self.relays.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.relays.stop()


class Relays:
    """One relay per node, all on one event loop in a background thread."""

    def __init__(self, routes: dict[str, tuple[str, str]]) -> None:
        self.routes = routes  # node id -> (relay address, the node's real Raft address)
        self.isolated: set[str] = set()
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relays",
                                        daemon=True)
        self._servers: list[asyncio.Server] = []
        self._links: set[asyncio.StreamWriter] = set()  # open inbound connections

    # ------------------------------------------------------------------ from other threads

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def isolate(self, node_id: str) -> None:
        self._loop.call_soon_threadsafe(self.isolated.add, node_id)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self.isolated.clear)

    # ----------------------------------------------------------------------- on the loop

    def blocked(self, sender: str, dest: str) -> bool:
        return sender in self.isolated or dest in self.isolated

    async def _listen(self) -> None:
        for node_id, (relay, _) in self.routes.items():
            host, port = relay.rsplit(":", 1)
            server = await asyncio.start_server(functools.partial(self._relay, node_id),
                                                host, int(port))
            self._servers.append(server)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self._links):
            link.close()

    async def _relay(self, dest: str, reader: asyncio.StreamReader,
                     inbound: asyncio.StreamWriter) -> None:
        outbound: asyncio.StreamWriter | None = None
        self._links.add(inbound)
        try:
            hello = await reader.readexactly(len(HELLO_MAGIC) + HEADER.size)
            (length,) = HEADER.unpack(hello[len(HELLO_MAGIC):])
            payload = await reader.readexactly(length)
            sender = str(msgpack.unpackb(payload)[0])
            host, port = self.routes[dest][1].rsplit(":", 1)
            _, out = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
            outbound = out
            out.write(hello + payload)
            while True:
                header = await reader.readexactly(HEADER.size)
                frame = await reader.readexactly(HEADER.unpack(header)[0])
                if self.blocked(sender, dest):
                    self.dropped += 1
                    continue
                out.write(header + frame)
                await out.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass  # either side went away: close both, the sender reconnects
        finally:
            self._links.discard(inbound)
            inbound.close()
            if outbound is not None:
                outbound.close()
            with contextlib.suppress(Exception):
                await inbound.wait_closed()

