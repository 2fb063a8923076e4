"""Konsul's objects in Consul's JSON shapes, and the Consul "nodes" Konsul has instead of agents.

Consul runs an agent on every machine and files each service instance under the node of the
agent that registered it. Konsul has no agents: its members hold the whole catalog. So:

- every Konsul member is one Consul node: named by its node id, with the host of its HTTP
  address as ``Address`` (a standalone node is the one node);
- every service instance is filed under one node, the same for all of them: the member with
  the lowest node id among the voters (``konsul-0`` in Kubernetes, ``node1`` in the quick
  start). It only changes when that member leaves, and never with leadership;
- every member answers the ``/v1/agent`` endpoints for every instance.

Every endpoint of every member derives nodes from the replicated Raft configuration, so they
all agree. Node ids are UUIDs derived from the node id (the same on every member, every time).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import konsul
from konsul.net import parse_host_port
from konsul.store import Check, Service

if TYPE_CHECKING:
    from konsul.node import Node
    from konsul.store import StateMachine

DATACENTER = "dc1"
JSON = dict[str, Any]
# Fixed namespace for the node UUIDs (uuid5 of the node id).
_NODE_NAMESPACE = uuid.UUID("6b6f6e73-756c-4e6f-9465-2d6e6f646573")
_WEIGHTS = {"Passing": 1, "Warning": 1}


@dataclass(frozen=True, slots=True)
class ConsulNode:
    name: str
    address: str  # a host (no port)
    raft_address: str  # host:port, "" on a standalone node
    voter: bool

    @property
    def id(self) -> str:
        return str(uuid.uuid5(_NODE_NAMESPACE, self.name))

    def meta(self) -> dict[str, str]:
        return {"konsul-voter": "true" if self.voter else "false"}

    def to_json(self) -> JSON:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": DATACENTER,
            "TaggedAddresses": tagged_addresses(self.address),
            "Meta": self.meta(),
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }


def tagged_addresses(host: str) -> dict[str, str]:
    return {"lan": host, "lan_ipv4": host, "wan": host, "wan_ipv4": host}


def _host(address: str) -> str:
    try:
        return parse_host_port(address)[0]
    except ValueError:
        return address


def nodes(node: Node) -> list[ConsulNode]:
    """Every member as a Consul node, sorted by name."""
    members = node.peers() if node.clustered else []
    if not members:
        return [ConsulNode(node.node_id, _host(node.settings.http_advertise_addr), "", True)]
    return sorted(
        (
            ConsulNode(m.id, _host(m.http_address or m.address), m.address, m.voter)
            for m in members
        ),
        key=lambda n: n.name,
    )


def self_node(node: Node) -> ConsulNode:
    """This member as a Consul node."""
    found = next((n for n in nodes(node) if n.name == node.node_id), None)
    host = _host(node.settings.http_advertise_addr)
    return found or ConsulNode(node.node_id, host, node.settings.raft.advertise_addr, False)


def home(all_nodes: Sequence[ConsulNode]) -> ConsulNode:
    """The node every service instance is filed under: the first voter by name."""
    return next((n for n in all_nodes if n.voter), all_nodes[0])


def node_matches(consul_node: ConsulNode, node_meta: dict[str, str]) -> bool:
    """``?node-meta=k:v`` filters (all must match)."""
    meta = consul_node.meta()
    return all(meta.get(k) == v for k, v in node_meta.items())


def node_meta_filter(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition(":")
        out[key] = value
    return out


# ----------------------------------------------------------------------------- services


def agent_service(svc: Service) -> JSON:
    """An instance as ``/v1/agent/services`` and ``/v1/catalog/node`` show it."""
    return {
        "ID": svc.id,
        "Service": svc.name,
        "Tags": list(svc.tags),
        "Meta": dict(svc.meta),
        "Port": svc.port,
        "Address": svc.address,
        "TaggedAddresses": {},
        "Weights": dict(_WEIGHTS),
        "EnableTagOverride": False,
        "Datacenter": DATACENTER,
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    }


def health_check(chk: Check, svc: Service, on: ConsulNode) -> JSON:
    """A check as ``/v1/health/*`` and ``/v1/agent/checks`` show it."""
    return {
        "Node": on.name,
        "CheckID": chk.id,
        "Name": chk.name,
        "Status": chk.status,
        "Notes": "",
        "Output": chk.output,
        "ServiceID": svc.id,
        "ServiceName": svc.name,
        "ServiceTags": list(svc.tags),
        "Type": chk.kind,
        "Interval": _go_duration(chk.interval),
        "Timeout": _go_duration(chk.timeout),
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": chk.create_index,
        "ModifyIndex": chk.modify_index,
    }


def catalog_service(svc: Service, on: ConsulNode) -> JSON:
    """An instance as ``/v1/catalog/service/<name>`` shows it (flat, with its node)."""
    return {
        "ID": on.id,
        "Node": on.name,
        "Address": on.address,
        "Datacenter": DATACENTER,
        "TaggedAddresses": tagged_addresses(on.address),
        "NodeMeta": on.meta(),
        "ServiceKind": "",
        "ServiceID": svc.id,
        "ServiceName": svc.name,
        "ServiceTags": list(svc.tags),
        "ServiceAddress": svc.address,
        "ServiceTaggedAddresses": {},
        "ServiceWeights": dict(_WEIGHTS),
        "ServiceMeta": dict(svc.meta),
        "ServicePort": svc.port,
        "ServiceEnableTagOverride": False,
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    }


def service_entry(store: StateMachine, svc: Service, on: ConsulNode) -> JSON:
    """An instance as ``/v1/health/service/<name>`` shows it: node, service, checks."""
    return {
        "Node": on.to_json(),
        "Service": agent_service(svc),
        "Checks": [health_check(c, svc, on) for c in store.service_checks(svc)],
    }


def _go_duration(seconds: float | None) -> str:
    """Consul shows check intervals as Go prints a time.Duration ("10s", "1m30s", "")."""
    if seconds is None:
        return ""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms / 1000:g}s"
    s = ms // 1000
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"


def agent_self(node: Node) -> JSON:
    """``/v1/agent/self``: what Prometheus, VictoriaMetrics and the CLI read from it."""
    me = self_node(node)
    return {
        "Config": {
            "Datacenter": DATACENTER,
            "PrimaryDatacenter": DATACENTER,
            "NodeName": me.name,
            "NodeID": me.id,
            "Server": True,
            "Revision": "",
            "Version": konsul.__version__,
        },
        "Member": member(me),
        "Meta": me.meta(),
    }


def member(consul_node: ConsulNode) -> JSON:
    """A member as ``/v1/agent/members`` lists it (Status 1: alive)."""
    port = 0
    if consul_node.raft_address:
        port = parse_host_port(consul_node.raft_address)[1]
    return {
        "Name": consul_node.name,
        "Addr": consul_node.address,
        "Port": port,
        "Tags": {
            "role": "consul",
            "dc": DATACENTER,
            "id": consul_node.id,
            "vsn": "2",
            "build": konsul.__version__,
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }
