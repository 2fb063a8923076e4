"""Raft messages over TCP: persistent connections, length-prefixed msgpack frames.

Each node listens on ``KONSUL_RAFT_BIND_ADDR`` and keeps one outgoing connection per peer that it
writes to (frames for one peer are written in order, many per syscall). Incoming connections are
read-only. A connection opens with a hello (magic, the sender's id, advertise address and
cluster id): a new server that has no configuration yet learns from it where to answer the
leader, and a connection from another cluster is closed at once (``konsul.raft.identity``).
After it, a frame is a 4-byte big-endian length and a payload of ``messages.encode``; a frame
that is too large or does not decode closes that one connection and nothing else.

Queues are bounded: Raft tolerates lost messages (it retries), so a peer that cannot keep up
loses its oldest queued frames instead of growing the leader's memory without limit.

An AppendEntries goes only over an open connection: while a peer is not connected it is
dropped, and a connection that breaks takes its whole backlog with it. What a leader sent to a
peer that was down is stale by the time the peer is back, and harmful: a restarted member took
the commit index in a probe queued a second earlier for the leader's current one, and said
ready while hundreds of entries behind (#16). The leader probes a peer it cannot reach once a
heartbeat, so the first fresh probe follows within one. The rest still waits for the peer (within
``MAX_UNCONNECTED_BYTES``): an election is not repeated before its timeout, a snapshot chunk
not before a stall, and neither says anything of the leader's commit index.

With TLS (``tls``), every connection is mutual TLS: the listener requires a certificate the CA
signed before a single byte reaches the hello or frame decoder (``konsul.raft.inbound``), and
the dialer presents ours and checks that the peer's names the host it dialled (the member's
advertise address). Refused handshakes, either way, go to ``tls.refused`` (logged, counted).

Connection loss is reported to the runtime (``on_unreachable``): a follower whose connection to
or from its leader breaks may start its pre-vote at once instead of waiting out the full
heartbeat timeout. That is what makes the replacement of a crashed leader fast.

A dead or restarted peer must cost no more than its own connection, whatever its address does:
- A peer that closes its end (it exited or restarted) is noticed on our outgoing connection at
  once, which is then replaced: peers never write on it, so its read side ends only with the
  peer's end. Kept open, it would swallow our next frames, and a peer that came back at another
  address (a container, a pod) would never see them; no reset comes from an address that is gone,
  so they went nowhere until ``UNACKED_TIMEOUT_MS`` and a killed leader took seconds to replace.
- An idle connection to an address that vanished without a word (a node lost) is found by TCP
  keepalive within about three seconds and replaced, before an election needs it.
- A peer that reaches us is dialled back at once, not at the end of our backoff: it is up. A dial
  still under way then starts over: it may be bound for the address the peer had before it
  restarted, where nothing answers, and would hold us until ``CONNECT_TIMEOUT``.
- Each reconnection looks the peer's name up afresh, in threads of the peer's own
  (``konsul.raft.lookup``): a resolver stalled on a dead peer's name delays no other, and a
  lookup the resolver lost holds our dials for half a second, not for glibc's five.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgpack

from konsul.logs import event
from konsul.net import parse_host_port
from konsul.raft.identity import ClusterIdentity
from konsul.raft.inbound import InboundConnection
from konsul.raft.lookup import PeerLookup
from konsul.raft.messages import (
    AppendEntries,
    DecodeError,
    InstallSnapshot,
    Message,
    decode,
    encode,
)
from konsul.tls import HANDSHAKE_TIMEOUT

log = logging.getLogger("konsul.raft.transport")

HEADER = struct.Struct(">I")
HELLO_MAGIC = b"KRFT1"
MAX_HELLO_BYTES = 1024
MAX_FRAME_BYTES = 64 << 20
MAX_QUEUED_FRAMES = 4096
# ... and at most this many bytes (at least the newest frame is kept): a peer that reads slowly
# or not at all must not grow the sender's memory by its AppendEntries (#16: a follower down
# while 125 MiB were written took the leader from 1.25 to 3.2 GB). Raft resends what is dropped.
MAX_QUEUED_BYTES = 64 << 20
# ... but only this many while the peer is not connected (down, restarting, unreachable): what
# waits for a dead peer is stale by the time it returns. (A leader's probes, up to 1 MiB once a
# heartbeat, are not queued then at all: see above.)
MAX_UNCONNECTED_BYTES = 4 << 20
# Beyond this many bytes waiting in the socket's user-space buffer, frames queue (and may be
# dropped, oldest first) instead of being written directly.
DIRECT_WRITE_LIMIT = 1 << 20
CONNECT_TIMEOUT = 1.0
# A connection must identify itself (after its TLS handshake, if any) within this long.
HELLO_TIMEOUT = 5.0
# How long sent data may stay unacknowledged before the kernel drops the connection. Behind a
# partition nothing is acknowledged; without a bound the kernel retransmits with exponential
# backoff for many minutes, and after healing our frames wait for its next retransmission (up to
# two minutes later). Aborting lets the write loop open a fresh connection instead.
UNACKED_TIMEOUT_MS = 2000
# An idle outgoing connection is probed after this many seconds, then every interval; with
# UNACKED_TIMEOUT_MS also bounding unanswered probes, a dead one ends about 3 s after going quiet.
KEEPALIVE_IDLE_S = KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_PROBES = 2
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0
FOREIGN_WARN_SECONDS = 60.0  # a peer of another cluster is logged once a minute, not per dial


@dataclass
class _Peer:
    """One outgoing connection: a bounded queue of encoded frames and the task that writes it."""

    node_id: str
    address: str
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    queued_bytes: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # Set when the peer reaches us (its hello): it is up, so a dial waiting out its backoff
    # goes now. (A restarted member dials us as it starts; without this, our next try came up
    # to BACKOFF_MAX later, and a leader killed in between waited for it.)
    retry: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    connected: bool = False  # a connection is open (the queue may hold MAX_QUEUED_BYTES)
    # The open connection while the kernel takes our writes without backlog: frames are then
    # written at once rather than one event-loop turn later by the write loop (a turn each way
    # of every replication round trip is a good part of a write's latency).
    writer: asyncio.StreamWriter | None = None

    def push(self, frames: list[bytes]) -> None:
        writer = self.writer
        if (
            writer is not None
            and not self.queue
            and not writer.is_closing()
            and writer.transport.get_write_buffer_size() < DIRECT_WRITE_LIMIT
        ):
            try:
                writer.write(b"".join(frames))  # (a single frame is not copied)
                return
            except (OSError, RuntimeError):  # reset under us: the write loop reconnects
                self.writer = None
        queue = self.queue
        limit = MAX_QUEUED_BYTES if self.connected else MAX_UNCONNECTED_BYTES
        for frame in frames:
            while queue and (len(queue) >= MAX_QUEUED_FRAMES
                             or self.queued_bytes + len(frame) > limit):
                self._drop_oldest()
            queue.append(frame)
            self.queued_bytes += len(frame)
        self.ready.set()

    def disconnected(self) -> None:
        """The connection is gone, and with it the backlog written for it: the peer that comes
        back on the next connection may be a restarted one, for which it is stale."""
        self.connected = False
        self.dropped += len(self.queue)
        self.take()

    def _drop_oldest(self) -> None:
        self.queued_bytes -= len(self.queue.popleft())
        self.dropped += 1

    def take(self) -> list[bytes]:
        """Every queued frame, oldest first, leaving the queue empty."""
        frames = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return frames


class _PeerReturned(Exception):
    """The peer reached us while we were dialling it: dial again, afresh and at once."""


class PeerTls(Protocol):
    """What the transport needs for mutual TLS (``konsul.tls.Tls``)."""

    def peer_server(self) -> ssl.SSLContext: ...
    def client(self) -> ssl.SSLContext: ...
    def refused(self, direction: str, peer: object, exc: BaseException) -> None: ...


class TcpTransport:
    def __init__(
        self,
        node_id: str,
        bind_addr: str,
        advertise_addr: str,
        resolve: Callable[[str], str | None] = lambda _: None,
        deliver: Callable[[Message], None] = lambda _: None,
        on_unreachable: Callable[[str], None] = lambda _: None,
        tls: PeerTls | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        identity: ClusterIdentity | None = None,
    ) -> None:
        self.node_id = node_id
        self._tls = tls
        self._handshake_timeout = handshake_timeout
        self.bind_addr = bind_addr
        self._advertise_addr = advertise_addr
        self._identity = identity
        self._foreign_warned: dict[str, float] = {}  # sender -> when we last logged it
        self._resolve = resolve
        self._learned: dict[str, str] = {}  # addresses from hellos, for servers not yet configured
        self._deliver = deliver
        self._on_unreachable = on_unreachable
        self._peers: dict[str, _Peer] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[InboundConnection] = set()
        self._serving: set[asyncio.Task[None]] = set()

    def attach(
        self,
        resolve: Callable[[str], str | None],
        deliver: Callable[[Message], None],
        on_unreachable: Callable[[str], None],
    ) -> None:
        """Connect to the runtime that drives this transport (``RaftRuntime`` does it when it is
        given one): where a peer is, what to do with a message, whom to tell of a lost peer."""
        self._resolve = resolve
        self._deliver = deliver
        self._on_unreachable = on_unreachable

    async def start(self) -> None:
        host, port = parse_host_port(self.bind_addr)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._accept, host, port, reuse_address=True
        )

    def _accept(self) -> InboundConnection:
        context = self._tls.peer_server() if self._tls is not None else None
        return InboundConnection(context, self._handshake_timeout, self._start_serving,
                                 self._refused)

    def _start_serving(self, reader: asyncio.StreamReader, conn: InboundConnection) -> None:
        self._inbound.add(conn)
        task = asyncio.get_running_loop().create_task(self._serve(reader, conn))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    def _refused(self, conn: InboundConnection, exc: BaseException) -> None:
        if self._tls is not None:
            self._tls.refused("inbound", _peer_name(conn), exc)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing an inbound connection ends its reader normally; cancelling the task would make
        # asyncio's stream protocol log the cancellation as an error.
        for conn in list(self._inbound):
            conn.close()
        tasks = [p.task for p in self._peers.values() if p.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._peers.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    # --------------------------------------------------------------------------- sending

    def send(self, messages: Sequence[Message]) -> None:
        """Send in order; one write per peer for all of its messages (one syscall, not one each).
        An AppendEntries waits for no connection: it is dropped while the peer is not connected."""
        by_peer: dict[str, list[Message]] = {}
        for msg in messages:
            by_peer.setdefault(msg.dst, []).append(msg)
        for node_id, batch in by_peer.items():
            peer = self._peer(node_id)
            if peer is None:
                continue
            if not peer.connected:
                batch = [msg for msg in batch if type(msg) is not AppendEntries]
                if not batch:
                    continue
            peer.push([HEADER.pack(len(payload)) + payload for payload in map(encode, batch)])

    def _peer(self, node_id: str) -> _Peer | None:
        address = self._resolve(node_id) or self._learned.get(node_id)
        if address is None:
            return None
        peer = self._peers.get(node_id)
        if peer is not None and peer.address != address:  # the member moved: reconnect
            if peer.task is not None:
                peer.task.cancel()
            peer = None
        if peer is None:
            peer = self._peers[node_id] = _Peer(node_id, address)
            peer.task = asyncio.create_task(self._write_loop(peer), name=f"raft-to-{node_id}")
        return peer

    def connect(self, node_id: str) -> None:
        """Keep a connection to a member open before there is anything to send it: an election's
        first messages then need no name lookup or handshake."""
        self._peer(node_id)

    def peer_ids(self) -> list[str]:
        return list(self._peers)

    def forget(self, node_id: str) -> None:
        """Close the connection to a server that left the configuration."""
        peer = self._peers.pop(node_id, None)
        if peer is not None and peer.task is not None:
            peer.task.cancel()

    async def _write_loop(self, peer: _Peer) -> None:
        backoff = BACKOFF_MIN
        lookup = PeerLookup(*parse_host_port(peer.address))
        while True:
            peer.retry.clear()
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the dial's error
                # instead of a cancellation that arrives as the dial fails, and this loop, told
                # to stop, would go on dialling and its transport's stop() would never return.
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    reader, writer = await self._dial(peer, lookup)
            except _PeerReturned:
                backoff = BACKOFF_MIN
                continue
            except (OSError, TimeoutError) as exc:
                if isinstance(exc, ssl.SSLError) and self._tls is not None:
                    self._tls.refused("outbound", peer.address, exc)
                self._on_unreachable(peer.node_id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):  # (not wait_for: as above)
                        await peer.retry.wait()
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_MIN
            peer.connected = True
            _tune(writer)
            watch = asyncio.create_task(_until_peer_closes(reader, writer, peer))
            try:
                writer.write(self._hello())
                await self._drain(peer, writer)
            except (OSError, RuntimeError):
                # uvloop raises RuntimeError ("the handler is closed"), not an OSError, for a
                # write on a connection the peer already reset: it too means "reconnect". Letting
                # it escape ended this task and cut us off from the peer until our own restart.
                event(log, logging.DEBUG, "connection lost", peer=peer.node_id)
                self._on_unreachable(peer.node_id)
            finally:
                peer.disconnected()
                watch.cancel()
                writer.close()

    async def _dial(
        self, peer: _Peer, lookup: PeerLookup
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a connection to the peer, unless it reaches us first (``_PeerReturned``).

        A peer that restarted in a container or pod comes back at a new IP address. A dial made
        while it was away may have looked its name up when the name still gave the old one, and
        a SYN to an address nobody holds is neither answered nor refused: the dial waits out
        ``CONNECT_TIMEOUT`` while the peer, up again, waits for us. (Seen on the guide's compose
        deployment: the leader, restarted right after a follower, handed leadership over to the
        other follower, whose dial to that member hung so; the new leader heard from no majority
        within its lease, stepped down, and leadership ended on the restarted leader.)
        """
        dial = asyncio.ensure_future(self._open(lookup))
        returned = asyncio.ensure_future(peer.retry.wait())
        try:
            await asyncio.wait((dial, returned), return_when=asyncio.FIRST_COMPLETED)
        finally:
            returned.cancel()
            if not dial.done():
                dial.cancel()  # (closes the socket it was connecting)
        if not dial.done():
            lookup.ask_again()  # (a lookup still unanswered was sent while the peer was away)
            raise _PeerReturned(peer.node_id)
        return dial.result()

    async def _open(self, lookup: PeerLookup) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Dialled by address: a literal IP takes no lookup from asyncio's shared pool.
        address = await lookup.address()
        if self._tls is None:
            return await asyncio.open_connection(address, lookup.port)
        # server_hostname: the peer's certificate must name the host we dialled.
        return await asyncio.open_connection(
            address, lookup.port, ssl=self._tls.client(), server_hostname=lookup.host,
            ssl_handshake_timeout=CONNECT_TIMEOUT,
        )

    def _hello(self) -> bytes:
        """Made at each dial: an empty node that joins a cluster claims it from then on."""
        cluster = self._identity.value if self._identity is not None else ""
        return _hello_frame(self.node_id, self._advertise_addr, cluster)

    def reconnect_all(self) -> None:
        """Drop every outgoing connection (they reopen with a new hello: the cluster changed)."""
        for node_id in list(self._peers):
            self.forget(node_id)

    @staticmethod
    async def _drain(peer: _Peer, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                if not peer.queue:
                    peer.writer = writer  # push() writes directly until a backlog builds
                    await peer.ready.wait()
                peer.writer = None
                peer.ready.clear()
                if writer.is_closing():  # the peer went away while we had nothing to send
                    raise ConnectionResetError(f"connection to {peer.node_id} closed")
                frames = peer.take()
                writer.writelines(frames)
                await writer.drain()
        finally:
            peer.writer = None

    # ------------------------------------------------------------------------- receiving

    async def _serve(self, reader: asyncio.StreamReader, conn: InboundConnection) -> None:
        sender: str | None = None
        try:
            hello_sender, address, cluster = await asyncio.wait_for(
                _read_hello(reader), HELLO_TIMEOUT
            )
            identity = self._identity
            if identity is not None and not identity.admits(cluster):
                self._refuse_foreign(hello_sender, address, cluster)
                return
            sender = hello_sender
            self._learned[sender] = address
            peer = self._peers.get(sender)
            if peer is not None:
                peer.retry.set()
            while True:
                header = await reader.readexactly(HEADER.size)
                (length,) = HEADER.unpack(header)
                if length > MAX_FRAME_BYTES:
                    raise DecodeError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
                msg = decode(await reader.readexactly(length))
                if msg.dst != self.node_id or msg.src != sender:
                    continue  # meant for whoever had our address before: not ours to act on
                if identity is not None and identity.value != cluster:
                    # Only an empty node listens to a cluster not its own: it has none yet.
                    if not identity.admits(cluster):
                        return  # it joined another cluster meanwhile
                    if isinstance(msg, (AppendEntries, InstallSnapshot)):
                        identity.adopt(cluster)  # it takes the first leader's it accepts
                self._deliver(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            if sender is not None:
                self._on_unreachable(sender)
        except TimeoutError:
            event(log, logging.WARNING, "no hello in time, closing connection",
                  peer=_peer_name(conn))
        except DecodeError as exc:
            event(log, logging.WARNING, "bad frame, closing connection", peer=_peer_name(conn),
                  error=exc)
        finally:
            conn.close()
            self._inbound.discard(conn)

    def _refuse_foreign(self, sender: str, address: str, cluster: str) -> None:
        now = time.monotonic()
        last = self._foreign_warned.get(sender)
        if last is None or now - last >= FOREIGN_WARN_SECONDS:
            self._foreign_warned[sender] = now
            ours = self._identity.value if self._identity is not None else ""
            event(log, logging.WARNING, "refusing Raft messages from another cluster",
                  peer=sender, address=address, their_cluster=cluster or "(none)",
                  our_cluster=ours or "(none)")


def _peer_name(conn: InboundConnection) -> str:
    peer = conn.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


async def _until_peer_closes(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: _Peer
) -> None:
    """Close our end as soon as the peer ends its own, and wake the write loop to reconnect."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.read(1)  # peers never write here: only the end of the stream comes
    writer.close()
    peer.ready.set()


def _tune(writer: asyncio.StreamWriter) -> None:
    """Bound unacknowledged data (UNACKED_TIMEOUT_MS) and probe idle connections (keepalive)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_USER_TIMEOUT", UNACKED_TIMEOUT_MS),  # these four: Linux (and some BSDs) only
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)


def _hello_frame(node_id: str, advertise_addr: str, cluster_id: str = "") -> bytes:
    payload: bytes = msgpack.packb([node_id, advertise_addr, cluster_id])
    return HELLO_MAGIC + HEADER.pack(len(payload)) + payload


async def _read_hello(reader: asyncio.StreamReader) -> tuple[str, str, str]:
    """(sender id, its advertise address, its cluster id; "" from versions before ids)."""
    if await reader.readexactly(len(HELLO_MAGIC)) != HELLO_MAGIC:
        raise DecodeError("not a Konsul Raft connection (bad hello)")
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > MAX_HELLO_BYTES:
        raise DecodeError(f"hello of {length} bytes exceeds {MAX_HELLO_BYTES}")
    try:
        node_id, address, *rest = msgpack.unpackb(await reader.readexactly(length))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"bad hello: {exc}") from None
    cluster = rest[0] if rest else ""
    if not all(isinstance(v, str) for v in (node_id, address, cluster)):
        raise DecodeError("bad hello: id, address and cluster must be strings")
    return node_id, address, cluster
