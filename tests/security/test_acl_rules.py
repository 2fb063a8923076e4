"""The authorizer against a direct reading of the rules' definition, for generated policies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from konsul.acl.rules import GLOBAL_MANAGEMENT, LEVELS, Authorizer, Level, RuleError, Rules

ALPHABET = "ab/"
names = st.text(ALPHABET, max_size=5)
levels = st.sampled_from(LEVELS)
tables = st.dictionaries(names, levels, max_size=5)
policies = st.builds(
    Rules, key_prefix=tables, service_prefix=tables,
    operator=st.one_of(st.none(), levels),
)


def spec(policies: list[Rules], kind: str, name: str, default_allow: bool) -> Level:
    """The documented rule, read literally: longest matching prefix; deny > write > read."""
    if kind == "operator":
        stated = [p.operator for p in policies if p.operator is not None]
    else:
        rules = [(prefix, level) for p in policies
                 for prefix, level in (p.key_prefix if kind == "key" else p.service_prefix).items()
                 if name.startswith(prefix)]
        longest = max((len(prefix) for prefix, _ in rules), default=-1)
        stated = [level for prefix, level in rules if len(prefix) == longest]
    for level in ("deny", "write", "read"):
        if level in stated:
            return level  # type: ignore[return-value]
    return "write" if default_allow else "deny"


@settings(max_examples=300, deadline=None)
@given(st.lists(policies, max_size=3), names, st.booleans())
def test_each_decision_is_the_longest_prefix_with_deny_beating_all(
    given_policies: list[Rules], name: str, default_allow: bool
) -> None:
    auth = Authorizer(given_policies, default_allow)
    assert auth.key(name) == spec(given_policies, "key", name, default_allow)
    assert auth.service(name) == spec(given_policies, "service", name, default_allow)
    assert auth.operator == spec(given_policies, "operator", "", default_allow)
    for want in ("read", "write"):
        level = auth.key(name)
        assert auth.allows("key", name, want) == (level == "write" or level == want)


@settings(max_examples=300, deadline=None)
@given(st.lists(policies, max_size=3), names, st.lists(names, max_size=6), st.booleans())
def test_prefix_checks_agree_with_every_key_below_the_prefix(
    given_policies: list[Rules], prefix: str, suffixes: list[str], default_allow: bool
) -> None:
    auth = Authorizer(given_policies, default_allow)
    # Every rule prefix below ours is a key that exists in the worst case.
    below = [p for pol in given_policies for p in pol.key_prefix if p.startswith(prefix)]
    keys = [prefix + s for s in suffixes] + below
    readable = auth.key_reader(prefix)
    for key in keys:
        assert readable(key) == auth.allows("key", key, "read")
    if auth.key_prefix_writable(prefix):
        assert all(auth.allows("key", key, "write") for key in keys)
    else:  # refused only when some key (the prefix itself, or a rule's) may not be written
        assert not all(auth.allows("key", key, "write") for key in [prefix, *below])


def test_management_may_do_everything_but_what_another_policy_denies() -> None:
    auth = Authorizer([GLOBAL_MANAGEMENT], default_allow=False)
    assert auth.allows("key", "any/key", "write") and auth.allows("operator", "", "write")
    fenced = Authorizer([GLOBAL_MANAGEMENT, Rules(key_prefix={"vault/": "deny"})], False)
    assert not fenced.allows("key", "vault/x", "read")
    assert fenced.allows("key", "vaulted", "write")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "rules must be an object"),
        ({"keys": {}}, "unknown rules: keys"),
        ({"key_prefix": ["a"]}, "rules.key_prefix must be an object"),
        ({"key_prefix": {"a": "admin"}}, "rules.key_prefix['a'] must be one of"),
        ({"service_prefix": {"\x00": "read"}}, "control characters"),
        ({"operator": "all"}, "rules.operator must be one of"),
    ],
)
def test_malformed_rules_are_refused_with_the_field_named(raw: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("[", r"\[")):
        Rules.parse(raw)


def test_rules_round_trip_through_json() -> None:
    raw = {"key_prefix": {"": "read", "app/": "write"}, "operator": "read"}
    assert Rules.parse(raw).to_json() == raw
