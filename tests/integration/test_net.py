"""The one host:port parser and the one TCP probe (``konsul.net``)."""

from __future__ import annotations

import asyncio

import pytest

from konsul.net import parse_host_port, probe


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("127.0.0.1:7000", ("127.0.0.1", 7000)), ("node-1.peers:1", ("node-1.peers", 1)),
     ("[::1]:65535", ("::1", 65535))],
)
def test_host_port_is_split_and_ipv6_brackets_dropped(text: str, parsed: tuple[str, int]) -> None:
    assert parse_host_port(text) == parsed


@pytest.mark.parametrize(
    "text", ["127.0.0.1", ":7000", "host:", "host:0", "host:65536", "host:7x", "host:²", "h: 1"]
)
def test_what_is_not_host_port_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)


async def test_the_probe_connects_or_says_why_not() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await probe(f"127.0.0.1:{port}", 2)
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await probe(f"127.0.0.1:{port}", 2)
    with pytest.raises(ValueError):
        await probe("nowhere", 2)
