"""Consul service definitions (``PUT /v1/agent/service/register``) as Konsul instances.

Consul decodes these bodies leniently, and clients rely on it: Go's JSON matches field names in
any case (``Name``, ``name``), Consul adds snake_case aliases
(``deregister_critical_service_after``), and durations come as strings (``"10s"``) or as
nanoseconds (Go's ``time.Duration``). So field names are compared after lower-casing and dropping
underscores; map *contents* (``Meta``) keep their keys as sent.

What Konsul cannot do is refused with a 400 rather than silently dropped: check kinds other
than HTTP, TCP and TTL, HTTP checks with another method, headers, a body or without TLS
verification, Connect and proxies. Fields that only decorate (``Notes``, ``Weights``,
``EnableTagOverride``, ``TaggedAddresses``, a check's initial ``Status``) are accepted and not
kept; ``docs/consul-compat.md`` lists them.

The result is the body ``konsul.store.commands.service_register`` validates like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from konsul.durations import parse_duration
from konsul.errors import BadRequest

# Service fields: what Konsul keeps (Konsul name), and what it accepts and ignores.
_SERVICE_KEPT = {"id": "id", "name": "name", "address": "address", "port": "port",
                 "tags": "tags", "meta": "meta"}
_SERVICE_IGNORED = {"enabletagoverride", "weights", "taggedaddresses", "namespace", "partition",
                    "datacenter", "locality", "kind", "check", "checks"}
_SERVICE_REFUSED = {"connect", "proxy", "socketpath"}

# Check fields.
_CHECK_KINDS = ("http", "tcp", "ttl")
_CHECK_DURATIONS = {"interval": "interval", "timeout": "timeout", "ttl": "ttl",
                    "deregistercriticalserviceafter": "deregister_critical_after"}
_CHECK_IGNORED = {"notes", "status", "serviceid", "outputmaxsize", "successbeforepassing",
                  "failuresbeforecritical", "failuresbeforewarning", "namespace", "partition",
                  "type"}
_CHECK_UNSUPPORTED_KINDS = {"args", "scriptargs", "script", "grpc", "grpcusetls",
                            "dockercontainerid", "shell", "h2ping", "h2pingusetls", "udp",
                            "osservice", "aliasnode", "aliasservice"}


def canonical(name: object) -> str:
    return str(name).lower().replace("_", "")


def fields(raw: object, what: str) -> dict[str, Any]:
    """An object's fields under their canonical names (400 if it is not an object)."""
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{what} must be a JSON object")
    return {canonical(k): v for k, v in raw.items()}


def duration(value: object, what: str) -> float:
    """A Consul duration (Go string or integer nanoseconds), in seconds."""
    if isinstance(value, bool):
        raise BadRequest(f"{what}: invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = value / 1e9
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise BadRequest(f"{what}: invalid duration {value!r}") from None
    else:
        raise BadRequest(f"{what}: invalid duration {value!r}")
    return float(seconds)


def service_instance(raw: object, default_address: str) -> dict[str, Any]:
    """The Konsul instance for a Consul service definition. An instance without an address
    gets ``default_address`` (the caller's): in Consul its node's address, the machine of the
    agent it registered with, stands in for it; Konsul's nodes are its own servers."""
    body = fields(raw, "The service definition")
    refused = sorted(k for k in _SERVICE_REFUSED if body.get(k))
    if refused:
        raise BadRequest(f"Konsul does not support {', '.join(refused)} (no Connect)")
    kind = body.get("kind")
    if kind not in (None, "", "typical"):
        raise BadRequest(f"Konsul does not support service kind {kind!r}")
    unknown = sorted(set(body) - set(_SERVICE_KEPT) - _SERVICE_IGNORED - _SERVICE_REFUSED)
    if unknown:
        raise BadRequest(f"Unknown service definition fields: {', '.join(unknown)}")
    if not body.get("name"):
        raise BadRequest("Missing service name")
    instance = {_SERVICE_KEPT[k]: v for k, v in body.items() if k in _SERVICE_KEPT}
    if not instance.get("address"):
        instance["address"] = default_address
    checks = _check_list(body.get("check"), body.get("checks"))
    if checks:
        instance["checks"] = [check(c, f"Checks[{i}]") for i, c in enumerate(checks)]
    return instance


def _check_list(single: object, many: object) -> list[object]:
    checks: list[object] = []
    if single:
        checks.append(single)
    if many is not None:
        if not isinstance(many, list):
            raise BadRequest("Checks must be a list")
        checks.extend(c for c in many if c)
    return checks


def check(raw: object, what: str) -> dict[str, Any]:
    """A Consul check definition as a Konsul check definition."""
    body = fields(raw, what)
    unsupported = sorted(k for k in _CHECK_UNSUPPORTED_KINDS if body.get(k))
    if unsupported:
        raise BadRequest(f"{what}: Konsul runs HTTP, TCP and TTL checks only, not {unsupported[0]}")
    _http_options(body, what)
    known = {"id", "checkid", "name", *_CHECK_KINDS, *_CHECK_DURATIONS, *_CHECK_IGNORED,
             "method", "header", "body", "tlsskipverify", "tlsservername", "disableredirects"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"{what}: unknown check fields: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    check_id = body.get("checkid") or body.get("id")
    if check_id:
        out["id"] = check_id
    if body.get("name"):
        out["name"] = body["name"]
    for kind in ("http", "tcp"):
        if body.get(kind):
            out[kind] = body[kind]
    for name, konsul_name in _CHECK_DURATIONS.items():
        seconds = duration(body[name], f"{what}.{name}") if body.get(name) else 0.0
        if seconds > 0:  # Consul's zero duration: not set
            out[konsul_name] = seconds
    return out


def _http_options(body: dict[str, Any], what: str) -> None:
    """HTTP check options Konsul's runner does not have: refuse all but their defaults."""
    method = body.get("method")
    if method not in (None, "", "GET"):
        raise BadRequest(f"{what}: Konsul's HTTP checks use GET only, not {method!r}")
    for option in ("header", "body", "tlsservername"):
        if body.get(option):
            raise BadRequest(f"{what}: Konsul's HTTP checks do not support {option!r}")
    if body.get("tlsskipverify"):
        raise BadRequest(f"{what}: Konsul's HTTPS checks always verify certificates")
