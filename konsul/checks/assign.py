"""Which member probes which check: rendezvous (highest-random-weight) hashing.

Every member computes the same answer from the same two inputs, with no coordination: a check
goes to the member whose ``weight(member, check)`` is highest. When a member leaves the set,
only the checks it held move (each to its runner-up); when one joins, it takes from each
other member only the checks it now wins — about 1/n of all, the least any assignment can
move. The weight is a keyed hash (blake2b), the same in every process and on every machine;
Python's ``hash()`` is salted per process and would give every member a different answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b


def weight(member: str, check_id: str) -> int:
    """The member's draw for the check: 64 bits, uniform, stable across processes."""
    digest = blake2b(check_id.encode(), digest_size=8, key=member.encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def owner(check_id: str, members: Sequence[str]) -> str | None:
    """The member that probes ``check_id`` (None when there are no members). Ties, which a
    64-bit hash all but never gives, go to the greater member id, so the answer is total."""
    if not members:
        return None
    return max(members, key=lambda m: (weight(m, check_id), m))


def share(check_ids: Iterable[str], members: Sequence[str], me: str) -> set[str]:
    """The checks of ``check_ids`` that ``me`` probes."""
    return {cid for cid in check_ids if owner(cid, members) == me}
