"""The replicated ACL tables: policies, tokens, and whether the cluster was bootstrapped.

They travel through Raft like any other data (commands ``acl_*`` in ``konsul.store.schema``)
and are part of every snapshot. A token's secret never does: commands carry its SHA-256
(``konsul.acl.tokens.hash_secret``), computed where the secret was made or received, so
neither the log, a snapshot nor a replica ever holds a secret.

Two objects are built in and always present: the ``global-management`` policy (everything; it
cannot be changed or deleted) and the anonymous token (what a request without a token gets; it
holds no policy until someone gives it one, and cannot be deleted).

``index`` is the index of the last ACL change: resolved tokens are cached until it moves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from konsul.acl.rules import GLOBAL_MANAGEMENT, Rules
from konsul.store.types import JSON, AclDeleted, AclWritten, Ignored, Reason, Rejected

MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
MANAGEMENT_POLICY_NAME = "global-management"
ANONYMOUS_TOKEN_ID = "00000000-0000-0000-0000-000000000002"


@dataclass(slots=True)
class AclPolicy:
    id: str
    name: str
    description: str
    rules: Rules
    create_index: int
    modify_index: int

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "rules": self.rules.to_json(),
            "create_index": self.create_index,
            "modify_index": self.modify_index,
        }


@dataclass(slots=True)
class AclToken:
    accessor_id: str
    secret_hash: str  # "" for the anonymous token: no secret resolves to it
    description: str
    policies: tuple[str, ...]  # policy ids
    create_index: int
    modify_index: int


_MANAGEMENT = AclPolicy(
    MANAGEMENT_POLICY_ID, MANAGEMENT_POLICY_NAME, "Everything: for operators and bootstrap.",
    GLOBAL_MANAGEMENT, 0, 0,
)
_ANONYMOUS = AclToken(ANONYMOUS_TOKEN_ID, "", "Anonymous: what requests without a token get.",
                      (), 0, 0)


class AclTable:
    def __init__(self) -> None:
        self.policies: dict[str, AclPolicy] = {MANAGEMENT_POLICY_ID: _MANAGEMENT}
        self.tokens: dict[str, AclToken] = {ANONYMOUS_TOKEN_ID: _ANONYMOUS}
        self._by_hash: dict[str, str] = {}
        self.bootstrapped = 0  # index of the bootstrap; 0: never
        self.index = 0

    # ------------------------------------------------------------------------- reads

    def policy(self, policy_id: str) -> AclPolicy | None:
        return self.policies.get(policy_id)

    def policy_named(self, name: str) -> AclPolicy | None:
        return next((p for p in self.policies.values() if p.name == name), None)

    def all_policies(self) -> list[AclPolicy]:
        return sorted(self.policies.values(), key=lambda p: p.name)

    def token(self, accessor_id: str) -> AclToken | None:
        return self.tokens.get(accessor_id)

    def token_for_hash(self, secret_hash: str) -> AclToken | None:
        accessor = self._by_hash.get(secret_hash)
        return self.tokens.get(accessor) if accessor is not None else None

    def all_tokens(self) -> list[AclToken]:
        return sorted(self.tokens.values(), key=lambda t: t.accessor_id)

    def rules_of(self, token: AclToken) -> Iterator[Rules]:
        for policy_id in token.policies:
            policy = self.policies.get(policy_id)
            if policy is not None:
                yield policy.rules

    def token_json(self, token: AclToken) -> JSON:
        """A token as the API shows it: never its secret (only its hash is kept anyway)."""
        return {
            "accessor_id": token.accessor_id,
            "description": token.description,
            "policies": [
                {"id": p, "name": self.policies[p].name}
                for p in token.policies if p in self.policies
            ],
            "create_index": token.create_index,
            "modify_index": token.modify_index,
        }

    # ------------------------------------------------------------------------- apply

    def set_policy(
        self, index: int, policy_id: str, name: str, description: str, rules: Mapping[str, Any]
    ) -> AclWritten | Rejected:
        if policy_id == MANAGEMENT_POLICY_ID:
            return Rejected(Reason.CONFLICT, f"The {MANAGEMENT_POLICY_NAME} policy is built in.")
        named = self.policy_named(name)
        if named is not None and named.id != policy_id:
            return Rejected(
                Reason.CONFLICT, f"A policy named {name!r} already exists ({named.id})."
            )
        before = self.policies.get(policy_id)
        created = before.create_index if before is not None else index
        self.policies[policy_id] = AclPolicy(
            policy_id, name, description, Rules.parse(rules), created, index
        )
        self.index = index
        return AclWritten(policy_id, index)

    def delete_policy(self, index: int, policy_id: str) -> AclDeleted | Rejected:
        if policy_id == MANAGEMENT_POLICY_ID:
            return Rejected(Reason.CONFLICT, f"The {MANAGEMENT_POLICY_NAME} policy is built in.")
        if self.policies.pop(policy_id, None) is None:
            return Rejected(Reason.NOT_FOUND, f"No policy with id {policy_id!r}.")
        for token in list(self.tokens.values()):  # tokens lose the policy with it
            if policy_id in token.policies:
                kept = tuple(p for p in token.policies if p != policy_id)
                self.tokens[token.accessor_id] = AclToken(
                    token.accessor_id, token.secret_hash, token.description, kept,
                    token.create_index, index,
                )
        self.index = index
        return AclDeleted(policy_id, index)

    def set_token(
        self,
        index: int,
        accessor_id: str,
        secret_hash: str,
        description: str,
        policies: list[str],
    ) -> AclWritten | Rejected:
        missing = [p for p in policies if p not in self.policies]
        if missing:
            return Rejected(Reason.INVALID, f"No policy with id {missing[0]!r}.")
        before = self.tokens.get(accessor_id)
        if before is not None:
            if secret_hash and secret_hash != before.secret_hash:
                return Rejected(
                    Reason.CONFLICT, "A token's secret cannot change; create a new token."
                )
            secret_hash = before.secret_hash
        elif not secret_hash:
            return Rejected(Reason.INVALID, "A new token needs a secret.")
        owner = self._by_hash.get(secret_hash) if secret_hash else None
        if owner is not None and owner != accessor_id:
            return Rejected(Reason.CONFLICT, "Another token already has this secret.")
        self._store(AclToken(
            accessor_id, secret_hash, description, tuple(dict.fromkeys(policies)),
            before.create_index if before is not None else index, index,
        ))
        self.index = index
        return AclWritten(accessor_id, index)

    def delete_token(self, index: int, accessor_id: str) -> AclDeleted | Rejected:
        if accessor_id == ANONYMOUS_TOKEN_ID:
            return Rejected(
                Reason.CONFLICT, "The anonymous token is built in; give it no policy instead."
            )
        token = self.tokens.pop(accessor_id, None)
        if token is None:
            return Rejected(Reason.NOT_FOUND, f"No token with accessor id {accessor_id!r}.")
        self._by_hash.pop(token.secret_hash, None)
        self.index = index
        return AclDeleted(accessor_id, index)

    def bootstrap(
        self, index: int, accessor_id: str, secret_hash: str, description: str, initial: bool
    ) -> AclWritten | Rejected | Ignored:
        """The first management token. ``initial``: the one configured on the nodes
        (``KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN``), created if no token has that secret yet;
        otherwise ``POST /acl/bootstrap``, which works once per cluster and never again."""
        if initial:
            if secret_hash in self._by_hash:
                return Ignored("the initial management token exists")
        elif self.bootstrapped:
            return Rejected(
                Reason.CONFLICT, f"ACLs were already bootstrapped (at index {self.bootstrapped})."
            )
        if accessor_id in self.tokens or secret_hash in self._by_hash:
            return Rejected(Reason.CONFLICT, "A token with this accessor id or secret exists.")
        self._store(AclToken(accessor_id, secret_hash, description, (MANAGEMENT_POLICY_ID,),
                             index, index))
        self.bootstrapped = self.bootstrapped or index
        self.index = index
        return AclWritten(accessor_id, index)

    def _store(self, token: AclToken) -> None:
        self.tokens[token.accessor_id] = token
        if token.secret_hash:
            self._by_hash[token.secret_hash] = token.accessor_id

    # ------------------------------------------------------------------------- snapshots

    def dump(self) -> JSON:
        """Deterministic (sorted) plain data for a snapshot; built-ins are not written."""
        return {
            "index": self.index,
            "bootstrapped": self.bootstrapped,
            "policies": [
                [p.id, p.name, p.description, p.rules.to_json(), p.create_index, p.modify_index]
                for p in sorted(self.policies.values(), key=lambda p: p.id)
                if p.id != MANAGEMENT_POLICY_ID
            ],
            "tokens": [
                [t.accessor_id, t.secret_hash, t.description, list(t.policies), t.create_index,
                 t.modify_index]
                for t in sorted(self.tokens.values(), key=lambda t: t.accessor_id)
            ],
        }

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> AclTable:
        table = cls()
        if not raw:  # a snapshot from before ACLs
            return table
        for pid, name, description, rules, created, modified in raw["policies"]:
            table.policies[pid] = AclPolicy(pid, name, description, Rules.parse(rules),
                                            created, modified)
        for accessor, secret_hash, description, policies, created, modified in raw["tokens"]:
            table._store(AclToken(accessor, secret_hash, description, tuple(policies),
                                  created, modified))
        table.bootstrapped = int(raw["bootstrapped"])
        table.index = int(raw["index"])
        return table
