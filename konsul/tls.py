"""TLS for the HTTP API and mutual TLS between members, from files that are re-read on change.

``Tls(settings.tls, metrics)`` loads ``KONSUL_TLS_CERT_FILE``, ``KONSUL_TLS_KEY_FILE`` and
``KONSUL_TLS_CA_FILE`` and hands out the contexts every listener and dialer uses:

- ``http_server``: the API's listener. One live object (aiohttp's listener holds it), so a reload
  loads the new certificate and key *into* it; a new CA is added to it (an old CA stays trusted
  by the API until a restart). With ``KONSUL_TLS_VERIFY_INCOMING`` it requires a client
  certificate signed by the CA.
- ``peer_server()``: an accepted Raft connection. The peer must present a certificate the CA
  signed (mutual TLS).
- ``client()``: everything a node dials: Raft peers, the join probe, a forwarded write. It
  presents our certificate and checks the server's against the CA *and* against the host it
  dialled (a member's advertise address), so a valid certificate issued to another name does
  not pass.

The two member contexts are fetched per connection, so ``reload_if_changed`` (the node calls it
every second) simply replaces them: Kubernetes swaps a mounted Secret's files in place and an
operator renews certificates before they expire; new connections use the new certificate,
existing ones keep theirs until they reconnect. A half-written update (certificate and key that
do not match yet) is refused, logged and counted, and the old material stays in use.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import time
from dataclasses import dataclass

from konsul.config import TlsSettings
from konsul.logs import event
from konsul.metrics import Metrics

log = logging.getLogger("konsul.tls")

# How long a TLS handshake may take before the connection is dropped (a client that connects
# and never finishes must not hold a connection slot).
HANDSHAKE_TIMEOUT = 10.0
# At most one log line per (direction, reason) in this many seconds: a flood of refused
# connections must not become a flood of log lines.
REFUSAL_LOG_INTERVAL = 10.0

# OpenSSL reasons that mean "the peer's certificate is missing or not acceptable" and "this is
# not TLS at all"; anything else is a TLS protocol error.
_CERTIFICATE_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL",
     "UNSUPPORTED_PROTOCOL", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
)


class TlsError(Exception):
    """The TLS files cannot be used (missing, unreadable, or not a matching certificate/key)."""


def refusal_reason(exc: BaseException) -> str:
    """A short, fixed label for why a handshake failed (a metric label: never free text)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _CERTIFICATE_REASONS:
            return "certificate"
        if reason in _NOT_TLS_REASONS:
            return "not_tls"
        return "tls_error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "aborted"


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What identifies one version of a file: a swapped symlink or a rewrite changes it."""

    inode: int
    mtime_ns: int
    size: int


@dataclass(slots=True)
class _RefusalLog:
    last: float = 0.0
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class _Material:
    peer_server: ssl.SSLContext
    client: ssl.SSLContext
    not_after: float  # our certificate's expiry, seconds since the epoch


class Tls:
    def __init__(self, settings: TlsSettings, metrics: Metrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self._stamps = self._stat()
        material = self._load()
        self._material = material
        self.http_server = _server_context(settings, require_client=settings.verify_incoming)
        self._refusals: dict[tuple[str, str], _RefusalLog] = {}
        self._publish(material)

    # ------------------------------------------------------------------ contexts

    def peer_server(self) -> ssl.SSLContext:
        return self._material.peer_server

    def client(self) -> ssl.SSLContext:
        return self._material.client

    @property
    def not_after(self) -> float:
        return self._material.not_after

    # ------------------------------------------------------------------ reload

    def _paths(self) -> tuple[str, ...]:
        s = self.settings
        return tuple(p for p in (s.cert_file, s.key_file, s.ca_file) if p)

    def _stat(self) -> tuple[_Stamp | None, ...]:
        stamps: list[_Stamp | None] = []
        for path in self._paths():
            try:
                st = os.stat(path)  # follows symlinks: a Secret's ..data swap changes the inode
            except OSError:
                stamps.append(None)
            else:
                stamps.append(_Stamp(st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def reload_if_changed(self) -> bool:
        """Re-read the files if any changed since the last look; True if new material is in use."""
        stamps = self._stat()
        if stamps == self._stamps:
            return False
        ca_changed = stamps[-1] != self._stamps[-1] if self.settings.ca_file else False
        self._stamps = stamps  # a failed attempt is retried when the files change again
        try:
            material = self._load()
            self.http_server.load_cert_chain(self.settings.cert_file, self.settings.key_file)
            if ca_changed:
                self.http_server.load_verify_locations(self.settings.ca_file)
        except TlsError as exc:
            self._metrics.tls_reloads.labels("failed").inc()
            event(log, logging.WARNING, "TLS files changed but cannot be used; keeping the "
                  "previous certificate", error=exc)
            return False
        self._material = material
        self._publish(material)
        self._metrics.tls_reloads.labels("ok").inc()
        event(log, logging.INFO, "TLS certificate reloaded", not_after=_iso(material.not_after))
        return True

    def _load(self) -> _Material:
        s = self.settings
        try:
            return _Material(
                peer_server=_server_context(s, require_client=bool(s.ca_file)),
                client=_client_context(s),
                not_after=_not_after(s.cert_file),
            )
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise TlsError(f"cannot use {s.cert_file} / {s.key_file}: {exc}") from None

    def _publish(self, material: _Material) -> None:
        self._metrics.tls_cert_expiry.set(material.not_after)

    # ------------------------------------------------------------------ refusals

    def refused(self, direction: str, peer: object, exc: BaseException) -> None:
        """A handshake with ``peer`` failed: count it, and log it (at most once per interval
        per kind, with how many were not logged in between)."""
        reason = refusal_reason(exc)
        self._metrics.tls_refused.labels(direction, reason).inc()
        entry = self._refusals.setdefault((direction, reason), _RefusalLog())
        now = time.monotonic()
        if now - entry.last < REFUSAL_LOG_INTERVAL and entry.last:
            entry.suppressed += 1
            return
        event(log, logging.WARNING, "TLS connection refused", direction=direction, peer=peer,
              reason=reason, error=str(exc) or type(exc).__name__,
              suppressed=entry.suppressed)
        entry.last, entry.suppressed = now, 0


def _server_context(settings: TlsSettings, *, require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
        if settings.ca_file:
            context.load_verify_locations(settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use {settings.cert_file} / {settings.key_file}: {exc}") from None
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _client_context(settings: TlsSettings) -> ssl.SSLContext:
    # Only our CA: a certificate any public CA issued must not pass as a member's.
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


def _not_after(cert_file: str) -> float:
    from cryptography import x509

    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert.not_valid_after_utc.timestamp()


def _iso(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["HANDSHAKE_TIMEOUT", "Tls", "TlsError", "refusal_reason"]
