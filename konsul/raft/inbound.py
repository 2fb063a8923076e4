"""One accepted Raft connection, delivered as a ``StreamReader`` of what the peer sent.

Without TLS the bytes go straight to the reader. With TLS the handshake comes first, driven
here through ``ssl.MemoryBIO`` (the sans-I/O form of the ``ssl`` module): nothing the peer sends
reaches the reader, let alone the frame decoder, until its certificate has verified against the
CA. A handshake that fails or does not finish in time is reported to ``on_refused`` (logged and
counted by the caller) and the connection is closed.

Why not ``asyncio.start_server(ssl=...)``: a listener that does the handshake itself drops a
failed one silently (asyncio logs it only in debug mode), so refusals could be neither logged
nor counted; and uvloop's server-side ``start_tls`` loses handshakes under a uvloop client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, cast

READ_LIMIT = 1 << 20  # the reader pauses the socket beyond twice this much unread data
# Plaintext is read into one buffer per connection: a fresh large bytes object per read would
# cost an allocation (for big sizes, an mmap) every time.
_CHUNK = 1 << 16


class InboundConnection(asyncio.Protocol):
    def __init__(
        self,
        context: ssl.SSLContext | None,
        handshake_timeout: float,
        on_ready: Callable[[asyncio.StreamReader, InboundConnection], None],
        on_refused: Callable[[InboundConnection, BaseException], None],
    ) -> None:
        self._context = context
        self._handshake_timeout = handshake_timeout
        self._on_ready = on_ready
        self._on_refused = on_refused
        self.reader = asyncio.StreamReader(limit=READ_LIMIT)
        self._transport: asyncio.Transport | None = None
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._handshaken = False
        self._received = False  # a byte arrived: a peer that tried (a port probe did not)
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._buffer: bytearray | None = None

    # ----------------------------------------------------------------- the connection

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def peer_certificate(self) -> bytes | None:
        """The peer's certificate (DER) once the handshake is done; ``None`` without TLS."""
        return self._tls.getpeercert(binary_form=True) if self._tls is not None else None

    # ----------------------------------------------------------------- protocol events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)
        self.reader.set_transport(self._transport)  # lets the reader pause the socket when full
        if self._context is None:
            self._handshaken = True
            self._on_ready(self.reader, self)
            return
        self._tls = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self._tls is None:
            self.reader.feed_data(data)
            return
        if self._refused:
            return
        self._received = True
        self._incoming.write(data)
        if not self._handshaken and not self._handshake():
            return
        self._read_plaintext()

    def eof_received(self) -> bool | None:
        self.reader.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._handshaken and self._received and not self._refused:
            self._on_refused(self, exc or ConnectionAbortedError("closed during the handshake"))
        if exc is None:
            self.reader.feed_eof()
        else:
            self.reader.set_exception(exc)

    # ----------------------------------------------------------------- TLS

    def _handshake(self) -> bool:
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError as exc:
            self._flush()  # the alert tells the peer why
            self._refuse(exc)
            return False
        self._flush()
        self._handshaken = True
        if self._timer is not None:
            self._timer.cancel()
        self._on_ready(self.reader, self)
        return True

    def _read_plaintext(self) -> None:
        assert self._tls is not None
        if self._buffer is None:
            self._buffer = bytearray(_CHUNK)
        view = memoryview(self._buffer)
        while True:
            try:
                size = cast(int, self._tls.read(_CHUNK, self._buffer))  # (a count, given a buffer)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.reader.feed_eof()
                break
            except ssl.SSLError as exc:
                self.reader.set_exception(ConnectionResetError(f"TLS error: {exc}"))
                self.close()
                break
            if not size:
                self.reader.feed_eof()
                break
            self.reader.feed_data(view[:size])  # (the reader copies it into its buffer)
        self._flush()  # TLS 1.3 may answer (key updates)

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self._transport is not None and not self._transport.is_closing():
            self._transport.write(pending)

    def _timed_out(self) -> None:
        self._timer = None
        if not self._handshaken and not self._refused:
            self._refuse(TimeoutError(
                f"TLS handshake not finished within {self._handshake_timeout:g}s"
            ))

    def _refuse(self, exc: BaseException) -> None:
        self._refused = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_refused(self, exc)
        self.close()
