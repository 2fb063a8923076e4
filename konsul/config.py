"""Every ``KONSUL_*`` variable, parsed and validated once at start into one typed object.

A bad value raises ``ConfigError`` naming the variable, the value and the accepted form; the
entry point turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from konsul.acl.tokens import MAX_SECRET_LEN, MIN_SECRET_LEN, valid_secret
from konsul.durations import FORM as DURATION_FORM
from konsul.durations import parse_duration
from konsul.net import parse_host_port

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")


class ConfigError(Exception):
    def __init__(self, variable: str, value: str, form: str, *, hide: bool = False) -> None:
        shown = "<hidden>" if hide else repr(value)  # a secret is never echoed
        super().__init__(f"invalid {variable}={shown}: expected {form}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class RaftSettings:
    enabled: bool
    node_id: str
    bind_addr: str
    advertise_addr: str
    data_dir: str
    bootstrap: bool
    heartbeat_timeout: float
    election_timeout: float
    leader_lease_timeout: float
    commit_timeout: float
    snapshot_interval: float
    snapshot_threshold: int
    snapshot_retention: int
    max_append_entries: int
    max_append_bytes: int
    max_inflight_bytes: int
    trailing_logs: int
    log_level: str


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``KONSUL_TLS_*``: with a certificate and key the API serves HTTPS only, and a clustered
    node speaks mutual TLS to its peers (which needs the CA)."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    verify_incoming: bool = False  # the HTTP API also requires a client certificate

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True, slots=True)
class AclSettings:
    """``KONSUL_ACL_*``: access control with tokens and policies (off unless enabled)."""

    enabled: bool = False
    default_allow: bool = False  # KONSUL_ACL_DEFAULT_POLICY=allow: what no rule names is allowed
    initial_management_token: str = ""
    initial_management_token_file: str = ""  # re-read by the leader (a rotated Secret)
    metrics_public: bool = False  # KONSUL_METRICS_PUBLIC: /metrics without operator:read


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    data_dir: str
    log_level: str
    http_advertise_addr: str
    forward_writes: bool
    raft: RaftSettings
    tls: TlsSettings = TlsSettings()
    acl: AclSettings = AclSettings()

    @property
    def http_scheme(self) -> str:
        """How every node of the cluster is reached over HTTP (all share one TLS setting)."""
        return "https" if self.tls.enabled else "http"


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < minimum:
            raise ValueError(text)
        return value

    return parse


def _port(text: str) -> int:
    value = int(text.strip())
    if not 0 < value < 65536:
        raise ValueError(text)
    return value


def _host_port(text: str) -> str:
    parse_host_port(text.strip())
    return text.strip()


def _level(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in LOG_LEVELS:
        raise ValueError(text)
    return "warning" if lowered == "warn" else lowered


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(text)
    return value


class _Reader:
    """Reads one variable at a time and turns a parse failure into a ConfigError."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(
        self, name: str, default: str, parse: Callable[[str], T], form: str, *, hide: bool = False
    ) -> T:
        raw = self.env.get(name, default)
        try:
            return parse(raw)
        except ValueError:
            raise ConfigError(name, raw, form, hide=hide) from None

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, default)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment (``os.environ`` when not given)."""
    read = _Reader(os.environ if env is None else env)
    data_dir = read.text("KONSUL_DATA_DIR", "./data")
    port = read.get("KONSUL_PORT", "8500", _port, "a TCP port between 1 and 65535")
    raft = _load_raft(read, data_dir)
    host = read.text("KONSUL_HOST", "0.0.0.0")
    http_advertise = read.get(
        "KONSUL_HTTP_ADVERTISE_ADDR",
        _default_http_advertise(host, port, raft.advertise_addr),
        _host_port,
        "host:port",
    )
    return Settings(
        host=host,
        port=port,
        data_dir=data_dir,
        log_level=read.get("KONSUL_LOG_LEVEL", "info", _level, " | ".join(LOG_LEVELS)),
        http_advertise_addr=http_advertise,
        forward_writes=read.get("KONSUL_FORWARD_WRITES", "false", _bool, "true or false"),
        raft=raft,
        tls=_load_tls(read, raft.enabled),
        acl=_load_acl(read),
    )


def _secret(text: str) -> str:
    token = text.strip()
    if not valid_secret(token):
        raise ValueError(text)
    return token


def read_secret_file(path: str) -> str:
    """A token kept in a file (a mounted Secret); ValueError if unreadable or too weak."""
    try:
        with open(path, encoding="utf-8") as f:
            return _secret(f.read())
    except (OSError, UnicodeDecodeError):
        raise ValueError(path) from None


def _load_acl(read: _Reader) -> AclSettings:
    secret_form = f"{MIN_SECRET_LEN} to {MAX_SECRET_LEN} printable characters without spaces"
    token = read.get("KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN", "", lambda t: t and _secret(t),
                     secret_form, hide=True)
    token_file = read.text("KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN_FILE", "").strip()
    if token_file:
        read.get("KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN_FILE", token_file,
                 lambda p: read_secret_file(p.strip()), f"a readable file holding {secret_form}")
    return AclSettings(
        enabled=read.get("KONSUL_ACL_ENABLED", "false", _bool, "true or false"),
        default_allow=read.get("KONSUL_ACL_DEFAULT_POLICY", "deny", _policy, "deny or allow"),
        initial_management_token=token,
        initial_management_token_file=token_file,
        metrics_public=read.get("KONSUL_METRICS_PUBLIC", "false", _bool, "true or false"),
    )


def _policy(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("deny", "allow"):
        raise ValueError(text)
    return lowered == "allow"


def _load_tls(read: _Reader, clustered: bool) -> TlsSettings:
    tls = TlsSettings(
        cert_file=read.text("KONSUL_TLS_CERT_FILE", "").strip(),
        key_file=read.text("KONSUL_TLS_KEY_FILE", "").strip(),
        ca_file=read.text("KONSUL_TLS_CA_FILE", "").strip(),
        verify_incoming=read.get(
            "KONSUL_TLS_VERIFY_INCOMING", "false", _bool, "true or false"
        ),
    )
    if bool(tls.cert_file) != bool(tls.key_file):
        missing = "KONSUL_TLS_KEY_FILE" if tls.cert_file else "KONSUL_TLS_CERT_FILE"
        raise ConfigError(missing, "", "a file path (certificate and key go together)")
    if tls.ca_file and not tls.enabled:
        raise ConfigError(
            "KONSUL_TLS_CERT_FILE", "", "a file path (KONSUL_TLS_CA_FILE needs a certificate)"
        )
    if not tls.ca_file and tls.enabled and (tls.verify_incoming or clustered):
        why = "client certificates" if tls.verify_incoming else "mutual TLS between members"
        raise ConfigError("KONSUL_TLS_CA_FILE", "", f"a file path (the CA that signs {why})")
    return tls


def _load_raft(read: _Reader, data_dir: str) -> RaftSettings:
    enabled = read.get("KONSUL_RAFT_ENABLED", "false", _bool, "true or false")
    node_id = read.text("KONSUL_RAFT_NODE_ID", "" if enabled else socket.gethostname())
    if enabled and not node_id.strip():
        raise ConfigError("KONSUL_RAFT_NODE_ID", node_id, "a unique node id (required)")
    advertise = read.text("KONSUL_RAFT_ADVERTISE_ADDR", "")
    if enabled:
        advertise = read.get(
            "KONSUL_RAFT_ADVERTISE_ADDR",
            "",
            _host_port,
            "host:port other nodes can reach (required)",
        )
    duration = f"{DURATION_FORM}, greater than zero"
    max_append_bytes = read.get(
        "KONSUL_RAFT_MAX_APPEND_BYTES", "1048576", _int_at_least(1), "an integer >= 1 (bytes)"
    )
    return RaftSettings(
        enabled=enabled,
        node_id=node_id.strip(),
        bind_addr=read.get("KONSUL_RAFT_BIND_ADDR", "0.0.0.0:7000", _host_port, "host:port"),
        advertise_addr=advertise,
        data_dir=read.text("KONSUL_RAFT_DATA_DIR", os.path.join(data_dir, "raft")),
        bootstrap=read.get("KONSUL_RAFT_BOOTSTRAP", "false", _bool, "true or false"),
        heartbeat_timeout=read.get(
            "KONSUL_RAFT_HEARTBEAT_TIMEOUT", "1s", _positive_duration, duration
        ),
        election_timeout=read.get(
            "KONSUL_RAFT_ELECTION_TIMEOUT", "1s", _positive_duration, duration
        ),
        leader_lease_timeout=read.get(
            "KONSUL_RAFT_LEADER_LEASE_TIMEOUT", "500ms", _positive_duration, duration
        ),
        commit_timeout=read.get("KONSUL_RAFT_COMMIT_TIMEOUT", "50ms", _positive_duration, duration),
        snapshot_interval=read.get(
            "KONSUL_RAFT_SNAPSHOT_INTERVAL", "120s", _positive_duration, duration
        ),
        snapshot_threshold=read.get(
            "KONSUL_RAFT_SNAPSHOT_THRESHOLD", "8192", _int_at_least(1), "an integer >= 1"
        ),
        snapshot_retention=read.get(
            "KONSUL_RAFT_SNAPSHOT_RETENTION", "2", _int_at_least(1), "an integer >= 1"
        ),
        max_append_entries=read.get(
            "KONSUL_RAFT_MAX_APPEND_ENTRIES", "64", _int_at_least(1), "an integer >= 1"
        ),
        max_append_bytes=max_append_bytes,
        max_inflight_bytes=read.get(
            "KONSUL_RAFT_MAX_INFLIGHT_BYTES",
            "4194304",
            _int_at_least(max_append_bytes),
            f"an integer >= KONSUL_RAFT_MAX_APPEND_BYTES ({max_append_bytes}) (bytes)",
        ),
        trailing_logs=read.get(
            "KONSUL_RAFT_TRAILING_LOGS", "10240", _int_at_least(0), "an integer >= 0"
        ),
        log_level=read.get("KONSUL_RAFT_LOG_LEVEL", "info", _level, " | ".join(LOG_LEVELS)),
    )


def _default_http_advertise(host: str, port: int, raft_advertise: str) -> str:
    """Where other nodes and clients reach our HTTP API when nobody says otherwise."""
    if host not in ("0.0.0.0", "::", ""):
        return f"{host}:{port}"
    if raft_advertise:
        return f"{raft_advertise.rpartition(':')[0]}:{port}"
    return f"127.0.0.1:{port}"
