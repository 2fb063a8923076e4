"""From a request's token to what it may do: ``Resolver.resolve(secret) -> Identity | None``.

No token is the anonymous token; an unknown one is ``None`` (the API answers 403). Each
identity's ``Authorizer`` is built once and kept until the ACL tables change (their ``index``
moves, or a snapshot restore replaces them): a request then costs a dictionary lookup.

The node's own initial management token (``KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN``) is a
management token on that node even before the cluster holds it: a new cluster has no ACL
state until its first leader writes it, and whoever bootstraps it (the operator) must already
be let in. Whoever sets a node's configuration controls it anyway.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from konsul.acl.rules import GLOBAL_MANAGEMENT, Authorizer
from konsul.acl.tokens import hash_secret
from konsul.store.acl import ANONYMOUS_TOKEN_ID, AclTable

MAX_CACHED = 4096  # distinct tokens kept resolved; beyond, the cache starts over
INITIAL_MANAGEMENT = "initial-management-token"  # how errors name it before the cluster has it


@dataclass(frozen=True, slots=True)
class Identity:
    accessor_id: str
    authorizer: Authorizer

    @property
    def anonymous(self) -> bool:
        return self.accessor_id == ANONYMOUS_TOKEN_ID

    def describe(self) -> str:
        """How an error names it: never by its secret."""
        return "the anonymous token" if self.anonymous else f"token {self.accessor_id}"


class Resolver:
    def __init__(
        self,
        table: Callable[[], AclTable],
        default_allow: bool,
        initial_management: Callable[[], str] = lambda: "",
    ) -> None:
        self._table = table
        self._default_allow = default_allow
        self._initial_management = initial_management
        self._seen: tuple[AclTable, int] | None = None
        self._cache: dict[str | None, Identity] = {}

    def resolve(self, secret: str | None) -> Identity | None:
        table = self._table()
        if self._seen != (table, table.index):
            self._seen = (table, table.index)
            self._cache.clear()
        found = self._cache.get(secret)
        if found is not None:
            return found
        token = table.token(ANONYMOUS_TOKEN_ID) if secret is None else (
            table.token_for_hash(hash_secret(secret))
        )
        initial = self._initial_management()
        if token is None and secret is not None and initial and hmac.compare_digest(
            secret.encode(), initial.encode()
        ):
            return Identity(INITIAL_MANAGEMENT, Authorizer([GLOBAL_MANAGEMENT],
                                                           self._default_allow))
        if token is None:
            return None  # unknown tokens are not cached: random ones must not fill memory
        identity = Identity(
            token.accessor_id, Authorizer(table.rules_of(token), self._default_allow)
        )
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[secret] = identity
        return identity
