"""Addresses and reachability: the one ``host:port`` parser and the one TCP probe.

Every ``host:port`` Konsul reads (a Raft bind or advertise address, a join's addresses, a TCP
check's target) goes through ``parse_host_port``; every "can I connect there?" (a join's check
that the new server answers, a TCP health check) through ``probe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl


def parse_host_port(address: str) -> tuple[str, int]:
    """``host:port`` as (host, port), the brackets of an IPv6 host removed. ValueError unless
    there is a host and the port is a number in 1..65535."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not host:port: {address!r}")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port out of range: {address!r}")
    return host.strip("[]"), number


async def probe(address: str, timeout: float, tls: ssl.SSLContext | None = None) -> None:
    """Connect to ``address`` (and complete a TLS handshake with ``tls``, checking the peer's
    certificate for the host dialled) within ``timeout``, then hang up. Raises ValueError for
    an address that is not ``host:port``, and what the connection raised (an ``OSError``,
    ``ssl.SSLError`` among them, or ``TimeoutError``) when it fails. (A certificate that does
    not verify is an ``ssl.SSLCertVerificationError``, which is a ValueError too: parse the
    address first where the two must be told apart.)"""
    host, port = parse_host_port(address)
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None),
        timeout,
    )
    writer.close()
    if tls is None:  # (a TLS close waits for the peer's close_notify: not worth waiting for)
        with contextlib.suppress(OSError):
            await writer.wait_closed()
