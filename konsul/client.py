"""Python client for Konsul's HTTP API: ``Client`` (blocking, stdlib only) and ``AsyncClient``.

Both take one or several node addresses (``host:port``, ``http://host:port`` or
``https://host:port``; by default ``KONSUL_HTTP_ADDR``, comma-separated, else
``127.0.0.1:8500``), and what a secured cluster asks for (``Security``: a token, the CA that
signed the nodes' certificates, a client certificate; by default from ``KONSUL_HTTP_TOKEN``,
``KONSUL_HTTP_TOKEN_FILE``, ``KONSUL_CACERT``, ``KONSUL_CLIENT_CERT``, ``KONSUL_CLIENT_KEY``),
and:

- follow a follower's ``307`` to the leader and remember it, so later writes go there directly;
- move on to the next address when a node cannot be reached (for a write, only when the request
  certainly never reached the node: a refused connection, not a reset mid-request);
- retry ``503 no leader`` (an election is under way) with a bounded exponential backoff;
- send the token (``X-Konsul-Token``) and use the TLS settings on every request, redirects and
  retries included, and never follow a redirect from HTTPS down to plain HTTP;
- raise typed errors (``NotFound``, ``Conflict``, ``BadRequest``, ``TooLarge``, ``Unavailable``,
  ...; all ``KonsulHTTPError`` with ``status``, ``code``, ``message`` and the JSON ``body``).

Every endpoint has a method; results are the decoded JSON bodies. The read headers of the last
read are on ``client.last_index`` / ``last_known_leader`` / ``last_contact_ms`` (use one client
per thread or task when you rely on them), and ``request()`` returns them with the body.

    with Client(["10.0.0.1:8500", "10.0.0.2:8500"]) as c:
        c.kv_put("app/config", "v1")
        entry = c.kv_get("app/config")                     # {"key", "value", "flags", ...}
        entry = c.kv_get("app/config", index=c.last_index, wait="1m")   # blocking read
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, Generic, TypeVar

from konsul.backup import file as backup_file

DEFAULT_ADDR = "127.0.0.1:8500"
ENV_ADDR = "KONSUL_HTTP_ADDR"
TOKEN_HEADER = "X-Konsul-Token"
MAX_REDIRECTS = 5
# Retries of 503 "no leader" and of unreachable nodes: 0.05s doubling to 1s, 8 times (≈ 4.5 s),
# enough to ride out an election or a rolling restart without hanging a caller forever.
DEFAULT_RETRIES = 8
# Per socket operation: a restore's answer comes once the whole backup went through the log.
BACKUP_TIMEOUT = 3600.0
BACKOFF_START = 0.05
BACKOFF_MAX = 1.0


# ---------------------------------------------------------------- errors


class KonsulClientError(Exception):
    """Anything this client raises."""


class KonsulConnectionError(KonsulClientError):
    """No address could be reached (or a write's connection broke: its outcome is unknown)."""


class KonsulHTTPError(KonsulClientError):
    """The node answered with an error status; ``body`` is its JSON error document."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class BadRequest(KonsulHTTPError):
    """400: malformed input."""


class PermissionDenied(KonsulHTTPError):
    """403: the token (or the anonymous token, when none is sent) may not do this."""


class NotFound(KonsulHTTPError):
    """404: unknown key, service, check, node or endpoint."""


class Conflict(KonsulHTTPError):
    """409: CAS conflict, duplicate, or a transaction that failed (see ``errors``)."""

    @property
    def errors(self) -> list[Any]:
        errs = self.body.get("errors") if isinstance(self.body, dict) else None
        return errs if isinstance(errs, list) else []


class TooLarge(KonsulHTTPError):
    """413: value or body too large."""


class Unavailable(KonsulHTTPError):
    """503: no leader, no quorum, clustering disabled, or not ready."""


class GatewayTimeout(KonsulHTTPError):
    """504: the operation did not complete in time (e.g. a joining node could not be reached)."""


class NotLeaderError(KonsulHTTPError):
    """307 that could not be followed (no leader address, or too many redirects)."""


class ServerError(KonsulHTTPError):
    """500 or any other unexpected status."""


_ERRORS: dict[int, type[KonsulHTTPError]] = {
    307: NotLeaderError,
    400: BadRequest,
    403: PermissionDenied,
    404: NotFound,
    405: BadRequest,
    409: Conflict,
    413: TooLarge,
    503: Unavailable,
    504: GatewayTimeout,
}


def error_for(status: int, body: Any) -> KonsulHTTPError:
    code, message = "error", f"HTTP {status}"
    if isinstance(body, dict):
        code = str(body.get("error", code))
        message = str(body.get("message", message))
    elif isinstance(body, str) and body:
        message = body[:200]
    return _ERRORS.get(status, ServerError)(status, code, message, body)


# ---------------------------------------------------------------- requests and results


@dataclass(frozen=True, slots=True)
class Result:
    """One answer: status, decoded body and the read headers."""

    status: int
    data: Any
    headers: Mapping[str, str]

    @property
    def index(self) -> int | None:
        raw = self.headers.get("x-konsul-index")
        return int(raw) if raw and raw.isdigit() else None


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    has_body: bool = False
    timeout: float | None = None
    accept: tuple[int, ...] = ()  # error statuses that are an answer, not an exception
    raw: bool = False  # the body is text (metrics), not JSON
    upload: str | None = None  # a file sent as the body, as it is (a backup)
    sink: BinaryIO | None = None  # where a 200 answer's body goes, as it comes (a backup)

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "HEAD")

    def target(self) -> str:
        if not self.query:
            return self.path
        return f"{self.path}?{urllib.parse.urlencode(self.query)}"


@dataclass(frozen=True, slots=True)
class Security:
    """A token and TLS settings; ``Security.from_env()`` reads the ``KONSUL_*`` defaults."""

    token: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def from_env(
        cls,
        token: str | None = None,
        token_file: str | None = None,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> Security:
        """Given values win over the environment; a token file is read (and stripped) now."""
        env = os.environ
        token_file = token_file or env.get("KONSUL_HTTP_TOKEN_FILE") or None
        if token is None and token_file:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        return cls(
            token=token or env.get("KONSUL_HTTP_TOKEN") or None,
            ca_file=ca_file or env.get("KONSUL_CACERT") or None,
            client_cert=client_cert or env.get("KONSUL_CLIENT_CERT") or None,
            client_key=client_key or env.get("KONSUL_CLIENT_KEY") or None,
        )

    def headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.token} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext:
        """For ``https://`` addresses: trusts ``ca_file`` (else the system's CAs), presents the
        client certificate if there is one."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def normalize_address(addr: str, scheme: str = "http") -> str:
    """``host:port`` or ``http(s)://host:port[/]`` → ``http(s)://host:port`` (``scheme`` for a
    bare ``host:port``)."""
    addr = addr.strip().rstrip("/")
    if not addr:
        raise ValueError("empty address")
    if "://" not in addr:
        addr = f"{scheme}://{addr}"
    parsed = urllib.parse.urlsplit(addr)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an HTTP address: {addr!r}")
    return f"{parsed.scheme}://{parsed.netloc}"


def resolve_addresses(addresses: str | Sequence[str] | None) -> list[str]:
    if addresses is None:
        addresses = os.environ.get(ENV_ADDR) or DEFAULT_ADDR
    if isinstance(addresses, str):
        addresses = addresses.split(",")
    bases = [normalize_address(a) for a in addresses if a.strip()]
    if not bases:
        raise ValueError("no Konsul address given")
    return list(dict.fromkeys(bases))


def key_path(prefix: str, key: str) -> str:
    return prefix + urllib.parse.quote(key, safe="/")


def _decode(raw: bytes, as_text: bool) -> Any:
    if as_text:
        return raw.decode("utf-8", "replace")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _bool_query(**flags: bool) -> list[tuple[str, str]]:
    return [(name, "") for name, on in flags.items() if on]


def _read_query(
    consistent: bool, stale: bool, index: int | None, wait: str | float | None
) -> list[tuple[str, str]]:
    query = _bool_query(consistent=consistent, stale=stale)
    if index is not None:
        query.append(("index", str(index)))
    if wait is not None:
        query.append(("wait", wait if isinstance(wait, str) else f"{int(wait * 1000)}ms"))
    return query


def _wait_seconds(wait: str | float | None, index: int | None) -> float:
    if index is None:
        return 0.0
    if wait is None:
        return 300.0
    if isinstance(wait, (int, float)):
        return float(wait)
    from konsul.durations import parse_duration

    try:
        return min(parse_duration(wait), 600.0)
    except ValueError:
        return 0.0


R = TypeVar("R")


@dataclass
class _State:
    """Addresses and what the client has learned; shared by the sync and async transports."""

    bases: list[str]
    retries: int
    timeout: float
    security: Security = Security()
    current: int = 0
    last_index: int | None = None
    last_known_leader: bool | None = None
    last_contact_ms: int | None = None
    leader: str | None = None

    def base(self) -> str:
        return self.bases[self.current]

    def rotate(self) -> None:
        self.current = (self.current + 1) % len(self.bases)

    @staticmethod
    def redirect_target(result: Result, base: str) -> str:
        """The leader base URL a 307 names ('' when it names none)."""
        location = result.headers.get("location", "")
        if location:
            parts = urllib.parse.urlsplit(urllib.parse.urljoin(base + "/", location))
            if parts.scheme and parts.netloc:
                return f"{parts.scheme}://{parts.netloc}"
        elif isinstance(result.data, dict) and result.data.get("leader_http_addr"):
            scheme = urllib.parse.urlsplit(base).scheme
            return normalize_address(str(result.data["leader_http_addr"]), scheme)
        return ""

    def point_at(self, target: str) -> None:
        """Talk to ``target`` from now on (a leader learned from a 307)."""
        if target not in self.bases:
            self.bases.append(target)
        self.current = self.bases.index(target)
        self.leader = target

    def move_off(self, target: str) -> None:
        """Talk to any address but ``target`` next (if there is another)."""
        for _ in range(len(self.bases)):
            if self.base() != target:
                return
            self.rotate()

    def note_read(self, result: Result) -> None:
        h = result.headers
        if "x-konsul-index" in h:
            self.last_index = result.index
            self.last_known_leader = h.get("x-konsul-known-leader") == "true"
            contact = h.get("x-konsul-last-contact", "")
            self.last_contact_ms = int(contact) if contact.isdigit() else None

    def timeout_for(self, call: Call) -> float:
        extra = _wait_seconds(dict(call.query).get("wait"), _index_of(call))
        return (call.timeout or self.timeout) + extra * 1.1

    @staticmethod
    def backoff(attempt: int, result: Result | None) -> float:
        delay = min(BACKOFF_START * float(1 << min(attempt, 30)), BACKOFF_MAX)
        if result is not None:
            hint = result.headers.get("retry-after", "")
            if hint.isdigit():
                delay = min(max(delay, float(hint) / 4), BACKOFF_MAX)
        return delay


def _index_of(call: Call) -> int | None:
    raw = dict(call.query).get("index")
    return int(raw) if raw is not None and raw.isdigit() else None


def _retryable_503(call: Call, result: Result) -> bool:
    code = result.data.get("error") if isinstance(result.data, dict) else None
    # "no leader": nothing was proposed, retrying is always safe. "unavailable": a write's
    # outcome is unknown, so only reads are retried.
    return code == "no leader" or (code == "unavailable" and call.idempotent)


class _Plan:
    """The redirect and retry decisions for one call, shared by both transports (no I/O).

    The transport asks ``base()`` where to send, reports each outcome to ``unreached`` or
    ``answered``, and sleeps for the delay they return (``None`` from ``answered``: done).
    """

    def __init__(self, state: _State, call: Call) -> None:
        self.state = state
        self.call = call
        self.redirects = 0
        self.attempt = 0
        self.failures = 0
        self.unreachable: set[str] = set()

    def base(self) -> str:
        return self.state.base()

    def _backoff(self, result: Result | None) -> float:
        delay = self.state.backoff(self.attempt, result)
        self.attempt += 1
        # After a pause, nodes that failed may be back (a restarted leader): try them again.
        self.unreachable.clear()
        return delay

    def unreached(self, base: str, reason: str) -> float:
        state = self.state
        self.unreachable.add(base)
        self.failures += 1
        state.rotate()
        if self.failures % len(state.bases):
            return 0.0
        if self.attempt >= state.retries:
            raise KonsulConnectionError(f"no Konsul node reachable: {reason}")
        return self._backoff(None)

    def answered(self, base: str, result: Result) -> float | None:
        state, call = self.state, self.call
        state.note_read(result)  # a 404 read carries the read headers too
        if result.status < 300 or result.status in call.accept:
            return None
        if result.status == 307 and self.redirects < MAX_REDIRECTS:
            target = state.redirect_target(result, base)
            if target.startswith("http://") and base.startswith("https://"):
                # The token and the data would travel in the clear.
                raise NotLeaderError(
                    307, "not leader",
                    f"refusing to follow a redirect from {base} to plain HTTP ({target})",
                    result.data,
                )
            if target and target not in self.unreachable:
                state.point_at(target)
                self.redirects += 1
                return 0.0
            if target and self.attempt < state.retries:
                # A follower names a leader we just failed to reach: it has not noticed the
                # leader is gone yet. Wait for the election rather than bounce between them.
                state.move_off(target)
                return self._backoff(result)
        if result.status == 503 and self.attempt < state.retries and _retryable_503(call, result):
            if len(state.bases) > 1:
                state.rotate()
            return self._backoff(result)
        raise error_for(result.status, result.data)


# ---------------------------------------------------------------- endpoints


class _Endpoints(Generic[R]):
    """Every endpoint of the API as a method; ``_call`` runs it (blocking or as a coroutine).

    Also what both clients observed of the cluster (from the last answer's read headers).
    """

    _state: _State

    def _call(self, call: Call) -> R:
        raise NotImplementedError

    @property
    def addresses(self) -> list[str]:
        return list(self._state.bases)

    @property
    def last_index(self) -> int | None:
        return self._state.last_index

    @property
    def last_known_leader(self) -> bool | None:
        return self._state.last_known_leader

    @property
    def last_contact_ms(self) -> int | None:
        return self._state.last_contact_ms

    # KV
    def kv_get(
        self,
        key: str,
        *,
        consistent: bool = False,
        stale: bool = False,
        index: int | None = None,
        wait: str | float | None = None,
    ) -> R:
        query = _read_query(consistent, stale, index, wait)
        return self._call(Call("GET", key_path("/kv/", key), tuple(query)))

    def kv_list(
        self,
        prefix: str = "",
        *,
        keys: bool = False,
        separator: str | None = None,
        consistent: bool = False,
        stale: bool = False,
        index: int | None = None,
        wait: str | float | None = None,
    ) -> R:
        query = [("prefix", prefix), *_bool_query(keys=keys)]
        if separator is not None:
            query.append(("separator", separator))
        query += _read_query(consistent, stale, index, wait)
        return self._call(Call("GET", "/kv/", tuple(query)))

    def kv_put(
        self, key: str, value: str, *, flags: int | None = None, cas: int | None = None
    ) -> R:
        body: dict[str, Any] = {"value": value}
        if flags is not None:
            body["flags"] = flags
        query = (("cas", str(cas)),) if cas is not None else ()
        return self._call(Call("PUT", key_path("/kv/", key), query, body, True))

    def kv_delete(self, key: str, *, cas: int | None = None, recurse: bool = False) -> R:
        query = _bool_query(recurse=recurse)
        if cas is not None:
            query.append(("cas", str(cas)))
        return self._call(Call("DELETE", key_path("/kv/", key), tuple(query)))

    def txn(self, ops: Iterable[Mapping[str, Any]]) -> R:
        return self._call(Call("POST", "/txn", (), {"ops": [dict(op) for op in ops]}, True))

    # Services
    def register(self, service: Mapping[str, Any]) -> R:
        return self._call(Call("PUT", "/register", (), dict(service), True))

    def deregister(self, service_id: str) -> R:
        return self._call(Call("DELETE", key_path("/deregister/", service_id)))

    def heartbeat(self, service_id: str) -> R:
        return self._call(Call("PUT", key_path("/heartbeat/", service_id)))

    def services(
        self,
        name: str | None = None,
        *,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        passing: bool = False,
        consistent: bool = False,
        index: int | None = None,
        wait: str | float | None = None,
    ) -> R:
        query: list[tuple[str, str]] = [("name", name)] if name is not None else []
        query += [("tag", t) for t in tags]
        query += [(f"meta.{k}", v) for k, v in (meta or {}).items()]
        query += _bool_query(passing=passing)
        query += _read_query(consistent, False, index, wait)
        return self._call(Call("GET", "/services", tuple(query)))

    def service(
        self,
        name: str,
        *,
        tags: Sequence[str] = (),
        passing: bool = False,
        consistent: bool = False,
        index: int | None = None,
        wait: str | float | None = None,
    ) -> R:
        query = [("tag", t) for t in tags] + _bool_query(passing=passing)
        query += _read_query(consistent, False, index, wait)
        return self._call(Call("GET", key_path("/services/", name), tuple(query)))

    # Health
    def health_checks(self, *, consistent: bool = False) -> R:
        return self._call(Call("GET", "/health/checks", tuple(_bool_query(consistent=consistent))))

    def health_service(self, name: str, *, consistent: bool = False) -> R:
        query = tuple(_bool_query(consistent=consistent))
        return self._call(Call("GET", key_path("/health/service/", name), query))

    def update_check(self, check_id: str, status: str, output: str | None = None) -> R:
        body: dict[str, Any] = {"status": status}
        if output is not None:
            body["output"] = output
        return self._call(Call("PUT", key_path("/health/check/", check_id), (), body, True))

    def health(self) -> R:
        return self._call(Call("GET", "/health"))

    def health_live(self) -> R:
        return self._call(Call("GET", "/health/live"))

    def health_ready(self) -> R:
        """The readiness document; a not-ready node's 503 answer is returned, not raised."""
        return self._call(Call("GET", "/health/ready", accept=(503,)))

    # Cluster
    def cluster_status(self) -> R:
        return self._call(Call("GET", "/cluster/status"))

    def cluster_leader(self) -> R:
        return self._call(Call("GET", "/cluster/leader"))

    def cluster_peers(self) -> R:
        return self._call(Call("GET", "/cluster/peers"))

    def cluster_join(self, node_id: str, address: str, http_address: str | None = None) -> R:
        body = {"node_id": node_id, "address": address}
        if http_address:
            body["http_address"] = http_address
        return self._call(Call("POST", "/cluster/join", (), body, True, timeout=120))

    def cluster_leave(self, node_id: str) -> R:
        return self._call(Call("DELETE", key_path("/cluster/leave/", node_id), timeout=120))

    def cluster_snapshot(self) -> R:
        return self._call(Call("POST", "/cluster/snapshot", timeout=120))

    def transfer_leadership(self, node_id: str | None = None) -> R:
        body = {"node_id": node_id} if node_id else {}
        return self._call(Call("POST", "/cluster/transfer-leadership", (), body, True, timeout=60))

    def bootstrap(self) -> R:
        return self._call(Call("POST", "/cluster/bootstrap"))

    # Data
    def export(self) -> R:
        return self._call(Call("GET", "/export", timeout=300))

    def import_data(self, document: Mapping[str, Any]) -> R:
        return self._call(Call("POST", "/import", (), dict(document), True, timeout=300))

    def metrics(self) -> R:
        return self._call(Call("GET", "/metrics", raw=True))

    # ACL: policies and tokens (a policy is named by id or name, a token by accessor id)
    def acl_bootstrap(self) -> R:
        return self._call(Call("POST", "/acl/bootstrap"))

    def acl_policies(self) -> R:
        return self._call(Call("GET", "/acl/policies"))

    def acl_policy(self, ref: str) -> R:
        return self._call(Call("GET", key_path("/acl/policy/", ref)))

    def acl_policy_create(
        self, name: str, rules: Mapping[str, Any] | None = None, description: str = ""
    ) -> R:
        body = {"name": name, "description": description, "rules": dict(rules or {})}
        return self._call(Call("POST", "/acl/policy", (), body, True))

    def acl_policy_update(self, ref: str, **changes: Any) -> R:
        """``name``, ``description`` and/or ``rules``."""
        return self._call(Call("PUT", key_path("/acl/policy/", ref), (), changes, True))

    def acl_policy_delete(self, ref: str) -> R:
        return self._call(Call("DELETE", key_path("/acl/policy/", ref)))

    def acl_tokens(self) -> R:
        return self._call(Call("GET", "/acl/tokens"))

    def acl_token(self, accessor_id: str) -> R:
        return self._call(Call("GET", key_path("/acl/token/", accessor_id)))

    def acl_token_self(self) -> R:
        return self._call(Call("GET", "/acl/token/self"))

    def acl_token_create(
        self,
        policies: Sequence[str] = (),
        description: str = "",
        secret_id: str | None = None,
        accessor_id: str | None = None,
    ) -> R:
        """``policies`` by id or name. The answer carries ``secret_id``: shown only now."""
        body: dict[str, Any] = {"description": description,
                                "policies": [{"name": p} for p in policies]}
        if secret_id:
            body["secret_id"] = secret_id
        if accessor_id:
            body["accessor_id"] = accessor_id
        return self._call(Call("POST", "/acl/token", (), body, True))

    def acl_token_update(
        self, accessor_id: str, *, policies: Sequence[str] | None = None,
        description: str | None = None,
    ) -> R:
        body: dict[str, Any] = {}
        if policies is not None:
            body["policies"] = [{"name": p} for p in policies]
        if description is not None:
            body["description"] = description
        return self._call(Call("PUT", key_path("/acl/token/", accessor_id), (), body, True))

    def acl_token_delete(self, accessor_id: str) -> R:
        return self._call(Call("DELETE", key_path("/acl/token/", accessor_id)))


# ---------------------------------------------------------------- blocking client


def _state(
    addresses: str | Sequence[str] | None, retries: int, timeout: float, **security: str | None
) -> _State:
    return _State(resolve_addresses(addresses), retries, timeout, Security.from_env(**security))


class Client(_Endpoints[Any]):
    """Blocking client over ``http.client`` with one keep-alive connection per node.

    ``token``, ``token_file``, ``ca_file``, ``client_cert``, ``client_key``: see ``Security``
    (each defaults to its ``KONSUL_*`` variable). Not thread-safe: use one per thread.
    """

    def __init__(
        self,
        addresses: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = DEFAULT_RETRIES,
        token: str | None = None,
        token_file: str | None = None,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        self._state = _state(addresses, retries, timeout, token=token, token_file=token_file,
                             ca_file=ca_file, client_cert=client_cert, client_key=client_key)
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._ssl: ssl.SSLContext | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _call(self, call: Call) -> Any:
        return self.request(call).data

    def kv_watch(
        self, key: str, *, wait: str = "5m", consistent: bool = False
    ) -> Iterator[dict[str, Any] | None]:
        """Yield the key's entry (``None`` while it is absent) now and after every change,
        with blocking reads: ``for entry in client.kv_watch("app/config"): reload(entry)``."""
        index: int | None = None
        last: object = _UNSET
        while True:
            try:
                entry: dict[str, Any] | None = self.kv_get(
                    key, consistent=consistent, index=index,
                    wait=None if index is None else wait,
                )
            except NotFound:
                entry = None
            seen = self._state.last_index or 0
            # An index that went backwards (a node restored from an older snapshot, or another
            # node) restarts the watch rather than waiting for an index that may never come.
            index = seen if index is None or seen >= index else 0
            if entry != last:
                last = entry
                yield entry

    def request(self, call: Call) -> Result:
        """Run one call with redirects and retries; the full ``Result`` (status, body, headers)."""
        plan = _Plan(self._state, call)
        while True:
            base = plan.base()
            try:
                result = self._exchange(base, call)
            except _Unreached as exc:
                delay: float | None = plan.unreached(base, str(exc))
            else:
                delay = plan.answered(base, result)
                if delay is None:
                    return result
            if delay:
                time.sleep(delay)

    def _exchange(self, base: str, call: Call) -> Result:
        parts = urllib.parse.urlsplit(base)
        timeout = self._state.timeout_for(call)
        conn = self._conns.get(base)
        reused = conn is not None
        if conn is None:
            if parts.scheme == "https":
                if self._ssl is None:
                    self._ssl = self._state.security.ssl_context()
                conn = http.client.HTTPSConnection(
                    parts.hostname or "", parts.port, timeout=timeout, context=self._ssl
                )
            else:
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                  timeout=timeout)
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                raise _Unreached(f"{base}: {exc}") from None
            self._conns[base] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        body: bytes | BinaryIO | None = json.dumps(call.body).encode() if call.has_body else None
        headers = {"Accept": "application/json", **self._state.security.headers()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if call.upload is not None:
            body = open(call.upload, "rb")  # noqa: SIM115 (closed below, after the exchange)
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
        try:
            conn.request(call.method, call.target(), body=body, headers=headers)
            response = conn.getresponse()
            if call.sink is not None and response.status == 200:
                raw = _copy(response, call.sink)
            else:
                raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._conns.pop(base, None)
            stale = isinstance(
                exc,
                (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                 ssl.SSLEOFError, ssl.SSLZeroReturnError),
            )
            if reused and stale:
                # An idle keep-alive connection the server had closed: nothing was processed.
                # Over TLS the close shows as the TLS layer's EOF instead of RemoteDisconnected.
                return self._exchange(base, call)
            if call.idempotent:
                raise _Unreached(f"{base}: {exc}") from None
            raise KonsulConnectionError(
                f"{call.method} {call.path} to {base} failed mid-request ({exc}); "
                "the outcome is unknown"
            ) from None
        finally:
            if call.upload is not None and body is not None and not isinstance(body, bytes):
                body.close()
        if response.will_close:
            conn.close()
            self._conns.pop(base, None)
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return Result(response.status, _decode(raw, call.raw), headers_out)

    # Backups: bodies that are files, streamed both ways (docs/backup.md)

    def snapshot_save(self, path: str, *, stale: bool = False) -> dict[str, Any]:
        """Write a backup of the cluster to ``path``: streamed to a temporary file beside it,
        checked whole (``konsul.backup.file.inspect``), made durable, then renamed into place,
        so ``path`` is a complete, intact backup or is not written at all."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".konsul-backup-", suffix=".part")
        try:
            with os.fdopen(fd, "w+b") as sink:
                self.request(Call("GET", "/cluster/snapshot",
                                           tuple(_bool_query(stale=stale)),
                                           timeout=BACKUP_TIMEOUT, sink=sink))
                sink.flush()
                os.fsync(sink.fileno())
            checked = backup_file.inspect(backup_file.read_file(temp))
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_directory(directory)
        header = checked.header
        return {
            "path": path, "index": header.index, "term": header.term,
            "cluster_id": header.cluster_id, "node_id": header.node_id,
            "created": header.created, "size_bytes": checked.size,
            "kv_keys": checked.kv_count, "services": checked.service_count,
            "checks": checked.check_count,
        }

    def snapshot_restore(self, path: str) -> Any:
        """Restore the backup in ``path`` onto the running cluster. Sent to the leader at once
        (a follower would answer 307 before reading a body that may be gigabytes)."""
        leader = self.cluster_leader().get("leader_http_addr")
        if leader:
            scheme = urllib.parse.urlsplit(self._state.base()).scheme
            self._state.point_at(normalize_address(str(leader), scheme))
        return self._call(Call("POST", "/cluster/restore", timeout=BACKUP_TIMEOUT, upload=path))

    def bootstrap_from(self, path: str) -> Any:
        """Make this empty node a one-voter cluster holding the backup in ``path``."""
        return self._call(Call("POST", "/cluster/bootstrap", timeout=BACKUP_TIMEOUT,
                               upload=path))

    def cluster_recover(self) -> Any:
        """Make this survivor a cluster of one (a quorum lost for good: docs/backup.md)."""
        return self._call(Call("POST", "/cluster/recover"))


def _copy(response: http.client.HTTPResponse, sink: BinaryIO) -> bytes:
    """The answer's body into ``sink`` (from its start again if this is a retry)."""
    sink.seek(0)
    sink.truncate()
    while block := response.read(1 << 20):
        sink.write(block)
    return b""


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UNSET = object()


class _Unreached(Exception):
    """This node could not be reached and the request certainly had no effect there."""


# ---------------------------------------------------------------- asyncio client


class AsyncClient(_Endpoints[Awaitable[Any]]):
    """The same API over aiohttp: ``async with AsyncClient([...]) as c: await c.kv_get("k")``."""

    def __init__(
        self,
        addresses: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = DEFAULT_RETRIES,
        token: str | None = None,
        token_file: str | None = None,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        self._state = _state(addresses, retries, timeout, token=token, token_file=token_file,
                             ca_file=ca_file, client_cert=client_cert, client_key=client_key)
        self._session: Any = None
        self._ssl: ssl.SSLContext | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _call(self, call: Call) -> Awaitable[Any]:
        return self._data(call)

    async def _data(self, call: Call) -> Any:
        return (await self.request(call)).data

    async def request(self, call: Call) -> Result:
        plan = _Plan(self._state, call)
        while True:
            base = plan.base()
            try:
                result = await self._exchange(base, call)
            except _Unreached as exc:
                delay: float | None = plan.unreached(base, str(exc))
            else:
                delay = plan.answered(base, result)
                if delay is None:
                    return result
            if delay:
                await asyncio.sleep(delay)

    async def _exchange(self, base: str, call: Call) -> Result:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self._state.timeout_for(call))
        body = json.dumps(call.body).encode() if call.has_body else None
        headers = {"Accept": "application/json", **self._state.security.headers()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if base.startswith("https://") and self._ssl is None:
            self._ssl = self._state.security.ssl_context()
        try:
            async with self._session.request(
                call.method,
                base + call.target(),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                ssl=self._ssl if base.startswith("https://") else True,
            ) as response:
                raw = await response.read()
                headers_out = {k.lower(): v for k, v in response.headers.items()}
                return Result(response.status, _decode(raw, call.raw), headers_out)
        except aiohttp.ClientConnectorError as exc:
            raise _Unreached(f"{base}: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            if call.idempotent:
                raise _Unreached(f"{base}: {exc or type(exc).__name__}") from None
            raise KonsulConnectionError(
                f"{call.method} {call.path} to {base} failed mid-request "
                f"({exc or type(exc).__name__}); the outcome is unknown"
            ) from None


__all__ = [
    "AsyncClient",
    "BadRequest",
    "Call",
    "Client",
    "Conflict",
    "GatewayTimeout",
    "KonsulClientError",
    "KonsulConnectionError",
    "KonsulHTTPError",
    "NotFound",
    "NotLeaderError",
    "PermissionDenied",
    "Result",
    "Security",
    "ServerError",
    "TooLarge",
    "Unavailable",
    "error_for",
    "resolve_addresses",
]
