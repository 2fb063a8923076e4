"""ACL rules and the authorizer: what a token may do, decided by pure functions.

A policy's rules, as JSON (the names are Consul's)::

    {"key_prefix":     {"": "read", "app/": "write", "app/secret/": "deny"},
     "service_prefix": {"web": "write"},
     "operator":       "read"}

Three kinds of resource: keys and service names, each governed by prefix rules, and
``operator`` (cluster membership and status, snapshots, import/export, ACL management, metrics),
one level for the whole cluster. A level is ``read``, ``write`` (which includes read) or
``deny``.

How one token's decision is made (``Authorizer``), for a name of a kind:

1. every rule of that kind in any of the token's policies whose prefix the name starts with
   is a candidate (``""`` matches every name);
2. the longest such prefix wins: the most specific rule decides;
3. where several policies name that same prefix, ``deny`` beats ``write`` beats ``read``;
4. with no candidate, the default policy decides (``KONSUL_ACL_DEFAULT_POLICY``: ``deny``, or
   ``allow`` for everything).

So ``deny`` on ``app/secret/`` keeps a token out of that subtree whatever it may do in ``app/``,
and a ``write`` on ``app/public/`` opens that subtree again below a ``deny`` on ``app/``. Writing
a whole prefix at once (a recursive delete) needs write on the prefix *and* on every more
specific rule below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["deny", "read", "write"]
Kind = Literal["key", "service", "operator"]
LEVELS: tuple[Level, ...] = ("deny", "read", "write")
# Merging the same prefix named by several policies: the strongest statement wins.
_STRENGTH: dict[Level, int] = {"read": 0, "write": 1, "deny": 2}

MAX_RULES = 256  # per kind, per policy
MAX_PREFIX_BYTES = 512


class RuleError(ValueError):
    """Rules that are not well formed; the message names the offending field."""


def _level(value: object, where: str) -> Level:
    if value == "read" or value == "write" or value == "deny":
        return value
    raise RuleError(f"{where} must be one of read, write, deny; got {value!r}")


def _prefixes(raw: object, where: str) -> dict[str, Level]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where} must be an object of prefix: level")
    if len(raw) > MAX_RULES:
        raise RuleError(f"{where} has {len(raw)} rules; at most {MAX_RULES} allowed")
    out: dict[str, Level] = {}
    for prefix, level in raw.items():
        if not isinstance(prefix, str):
            raise RuleError(f"{where} prefixes must be strings")
        if len(prefix.encode("utf-8", "surrogatepass")) > MAX_PREFIX_BYTES:
            raise RuleError(f"{where} prefix {prefix[:40]!r}... is over {MAX_PREFIX_BYTES} bytes")
        if not prefix.isprintable():
            raise RuleError(f"{where} prefix {prefix!r} holds control characters")
        out[prefix] = _level(level, f"{where}[{prefix!r}]")
    return out


@dataclass(frozen=True, slots=True)
class Rules:
    """One policy's rules, validated."""

    key_prefix: Mapping[str, Level] = field(default_factory=dict)
    service_prefix: Mapping[str, Level] = field(default_factory=dict)
    operator: Level | None = None

    @classmethod
    def parse(cls, raw: object) -> Rules:
        """Rules from their JSON form; ``RuleError`` names what is wrong."""
        if not isinstance(raw, Mapping):
            raise RuleError("rules must be an object")
        unknown = set(raw) - {"key_prefix", "service_prefix", "operator"}
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            expected = "key_prefix, service_prefix, operator"
            raise RuleError(f"unknown rules: {names} (expected {expected})")
        operator = raw.get("operator")
        return cls(
            key_prefix=_prefixes(raw.get("key_prefix"), "rules.key_prefix"),
            service_prefix=_prefixes(raw.get("service_prefix"), "rules.service_prefix"),
            operator=None if operator is None else _level(operator, "rules.operator"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.key_prefix:
            out["key_prefix"] = dict(self.key_prefix)
        if self.service_prefix:
            out["service_prefix"] = dict(self.service_prefix)
        if self.operator is not None:
            out["operator"] = self.operator
        return out


# The built-in policy of management tokens: everything (rules of other policies still apply,
# so a management token given a deny on a prefix is denied there).
GLOBAL_MANAGEMENT = Rules(key_prefix={"": "write"}, service_prefix={"": "write"},
                          operator="write")


def _merge(tables: Iterable[Mapping[str, Level]]) -> dict[str, Level]:
    merged: dict[str, Level] = {}
    for table in tables:
        for prefix, level in table.items():
            have = merged.get(prefix)
            if have is None or _STRENGTH[level] > _STRENGTH[have]:
                merged[prefix] = level
    return merged


class _PrefixRules:
    """The rules of one kind, merged across a token's policies, longest prefix first."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Mapping[str, Level]) -> None:
        self._rules = sorted(rules.items(), key=lambda item: -len(item[0]))

    def decide(self, name: str) -> Level | None:
        for prefix, level in self._rules:
            if name.startswith(prefix):
                return level
        return None

    def below(self, prefix: str) -> list[Level]:
        """The levels of the rules strictly more specific than ``prefix``."""
        return [lv for p, lv in self._rules if len(p) > len(prefix) and p.startswith(prefix)]


def _grants(level: Level, want: Literal["read", "write"]) -> bool:
    return level == "write" or (want == "read" and level == "read")


class Authorizer:
    """Everything one token may do; build once per token and ACL state, ask many times."""

    def __init__(self, policies: Iterable[Rules], default_allow: bool) -> None:
        policies = list(policies)
        self._default: Level = "write" if default_allow else "deny"
        self._keys = _PrefixRules(_merge(p.key_prefix for p in policies))
        self._services = _PrefixRules(_merge(p.service_prefix for p in policies))
        operator = _merge({"": p.operator} for p in policies if p.operator is not None)
        self._operator: Level = operator.get("", self._default)

    # ----------------------------------------------------------------- single names

    def key(self, key: str) -> Level:
        return self._keys.decide(key) or self._default

    def service(self, name: str) -> Level:
        return self._services.decide(name) or self._default

    @property
    def operator(self) -> Level:
        return self._operator

    def allows(self, kind: Kind, name: str, want: Literal["read", "write"]) -> bool:
        if kind == "key":
            level = self.key(name)
        elif kind == "service":
            level = self.service(name)
        else:
            level = self._operator
        return _grants(level, want)

    # ----------------------------------------------------------------- whole prefixes

    def key_prefix_writable(self, prefix: str) -> bool:
        """May every key under ``prefix`` be written (a recursive delete)?"""
        return _grants(self.key(prefix), "write") and all(
            level == "write" for level in self._keys.below(prefix)
        )

    def key_reader(self, prefix: str) -> KeyFilter:
        """What filters a listing of the keys under ``prefix``: decided once for all of them
        when no rule is more specific than the prefix (the usual case), else per key."""
        if not self._keys.below(prefix):
            return KeyFilter(everything=_grants(self.key(prefix), "read"), authorizer=None)
        return KeyFilter(everything=False, authorizer=self)


@dataclass(frozen=True, slots=True)
class KeyFilter:
    everything: bool
    authorizer: Authorizer | None  # None: the answer is ``everything`` for every key

    def __call__(self, key: str) -> bool:
        if self.authorizer is None:
            return self.everything
        return _grants(self.authorizer.key(key), "read")


ALLOW_ALL = Authorizer([GLOBAL_MANAGEMENT], default_allow=True)
