"""Majority arithmetic, as pure functions (etcd-io/raft's ``quorum/majority.go``).

Konsul changes its configuration one server at a time, so every quorum is a simple majority of
the voters of one configuration: no joint consensus.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["VoteResult", "majority", "quorum_index", "vote_result"]


def majority(voters: int) -> int:
    """How many of ``voters`` make a majority."""
    return voters // 2 + 1


def quorum_index(values: list[int]) -> int:
    """The highest value that a majority of the voters has reached, one value per voter (0 for
    no voters): the commit index from match indexes, the confirmed read round from echoes.
    Sorts ``values`` in place."""
    values.sort(reverse=True)
    return values[len(values) // 2] if values else 0


class VoteResult(Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def vote_result(granted: int, refused: int, voters: int) -> VoteResult:
    """An election (or pre-vote) with this many answers of each kind among ``voters``."""
    needed = majority(voters)
    if granted >= needed:
        return VoteResult.WON
    if refused >= needed:
        return VoteResult.LOST
    return VoteResult.PENDING
