"""Cluster DNS for the local plane, fed from Services and EndpointSlices, on the bridge's
address (UDP and TCP port 53), plus the same names in a block of the host's /etc/hosts so that
tests on the host resolve them too.

Names answered (A records; TTL 5 s as CoreDNS):
  <svc>.<ns>.svc.cluster.local            the ready endpoint addresses (see below)
  <hostname>.<svc>.<ns>.svc.cluster.local a StatefulSet pod under its headless Service
  <a-b-c-d>.<ns>.pod.cluster.local        that address
ClusterIPs are not routed here (no kube-proxy), so a Service name answers its endpoints'
addresses, as a headless Service does. Every name outside cluster.local is NXDOMAIN: this server
never forwards a query off the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
from collections import defaultdict
from typing import cast

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from e2e.plane import names, pki
from e2e.plane.kube import Informer, Kube, Obj

TTL = 5
SUFFIX = f".{names.CLUSTER_DOMAIN}"
log = logging.getLogger("dns")


def records(services: dict[str, Obj], slices: dict[str, Obj]) -> dict[str, list[str]]:
    """FQDN -> addresses, from the current Services and EndpointSlices."""
    by_service: dict[tuple[str, str], list[Obj]] = defaultdict(list)
    for endpoint_slice in slices.values():
        meta = endpoint_slice["metadata"]
        service = meta.get("labels", {}).get("kubernetes.io/service-name")
        if service:
            by_service[(meta["namespace"], service)].append(endpoint_slice)
    table: dict[str, list[str]] = {}
    for svc in services.values():
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        if svc.get("spec", {}).get("type") == "ExternalName":
            continue
        base = f"{name}.{ns}.svc{SUFFIX}"
        table[base] = []
        for endpoint_slice in by_service[(ns, name)]:
            for endpoint in endpoint_slice.get("endpoints") or []:
                # The EndpointSlice controller already reports ready=true for every endpoint of
                # a Service that publishes not-ready addresses.
                if endpoint.get("conditions", {}).get("ready") is False:
                    continue
                addresses = endpoint.get("addresses", [])
                table[base] += addresses
                if endpoint.get("hostname"):
                    table.setdefault(f"{endpoint['hostname']}.{base}", []).extend(addresses)
    return {fqdn: sorted(set(ips)) for fqdn, ips in table.items()}


def pod_name_address(qname: str) -> str | None:
    """``10-244-1-5.<ns>.pod.cluster.local`` -> 10.244.1.5."""
    labels = qname.removesuffix(SUFFIX).split(".")
    if len(labels) != 3 or labels[2] != "pod":
        return None
    try:
        return str(ipaddress.IPv4Address(labels[0].replace("-", ".")))
    except ValueError:
        return None


def answer(query: DNSRecord, table: dict[str, list[str]]) -> DNSRecord:
    reply = query.reply()
    reply.header.ra = 0
    qname = str(query.q.qname).rstrip(".").lower()
    addresses = table.get(qname)
    if addresses is None and (pod := pod_name_address(qname)):
        addresses = [pod]
    if addresses is None:
        reply.header.rcode = RCODE.NXDOMAIN
    elif query.q.qtype in (QTYPE.A, QTYPE.ANY):
        for address in addresses:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=TTL))
    return reply   # a name we know without an A query: NOERROR, no answer


# --- the host's /etc/hosts ------------------------------------------------------------------

def hosts_lines(table: dict[str, list[str]]) -> list[str]:
    """Each name under both its full form and the short ``….svc`` form Konsul advertises."""
    lines = []
    for fqdn in sorted(table):
        for address in table[fqdn]:
            lines.append(f"{address} {fqdn} {fqdn.removesuffix(SUFFIX)}")
    return lines


def write_hosts_block(lines: list[str]) -> None:
    text = names.HOSTS_FILE.read_text()
    start, end = text.find(names.HOSTS_BEGIN), text.find(names.HOSTS_END)
    if start != -1 and end != -1:
        text = text[:start] + text[end + len(names.HOSTS_END):].lstrip("\n")
    if lines:
        text = text.rstrip("\n") + "\n" + "\n".join(
            [names.HOSTS_BEGIN, *lines, names.HOSTS_END]) + "\n"
    if text != names.HOSTS_FILE.read_text():
        temporary = names.HOSTS_FILE.with_name(".hosts.kpl")
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, names.HOSTS_FILE)


def remove_hosts_block() -> None:
    write_hosts_block([])


# --- the server -----------------------------------------------------------------------------

class Server(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = answer(DNSRecord.parse(data), self.table)
        except Exception:  # not DNS: ignore, as a resolver would time out
            return
        assert self.transport is not None
        self.transport.sendto(reply.pack(), addr)

    async def tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = answer(DNSRecord.parse(await reader.readexactly(size)), self.table).pack()
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def main() -> None:
    server = Server()
    kube = Kube(pki.admin())
    loop = asyncio.get_running_loop()
    address = str(names.BRIDGE_IP)
    await loop.create_datagram_endpoint(lambda: server, local_addr=(address, names.DNS_PORT))
    await asyncio.start_server(server.tcp, address, names.DNS_PORT)
    dirty = asyncio.Event()

    async def changed(_key: str, _obj: Obj | None) -> None:
        dirty.set()

    services = Informer(kube, "/api/v1/services", changed)
    slices = Informer(kube, "/apis/discovery.k8s.io/v1/endpointslices", changed)
    tasks = [asyncio.create_task(services.run()), asyncio.create_task(slices.run())]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log.info("serving on %s:%d", address, names.DNS_PORT)
    while not stop.is_set():
        waiter = asyncio.create_task(dirty.wait())
        await asyncio.wait([waiter, asyncio.create_task(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if dirty.is_set():
            await asyncio.sleep(0.1)   # one rebuild for a burst of events
            dirty.clear()
            server.table = records(services.items, slices.items)
            write_hosts_block(hosts_lines(server.table))
    for task in tasks:
        task.cancel()
    remove_hosts_block()
    await kube.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
