"""Configurations: the ones in the log, and the single-server changes a leader may propose.

Konsul changes membership one server at a time (Raft dissertation 4.1), so there is no joint
consensus: the latest configuration in the log is in force as soon as it is appended (and
undone if its entry is truncated), and a leader appends a new one only once the previous one
is committed. New servers join as non-voters; the leader promotes one once it has caught up.
"""

from __future__ import annotations

from collections.abc import Sequence

from konsul.raft.errors import ProposalRejected
from konsul.raft.messages import decode_configuration
from konsul.raft.types import Configuration, Entry, EntryKind, Member

__all__ = ["Configurations", "with_learner", "with_voter", "without"]


class Configurations:
    """The latest committed configuration and the uncommitted ones after it, by log index."""

    __slots__ = ("_history",)

    def __init__(self, commit: int, committed: Configuration, entries: Sequence[Entry]) -> None:
        self._history: list[tuple[int, Configuration]] = [(commit, committed)]
        for e in entries:
            if e.kind is EntryKind.CONFIG and e.index > commit:
                self._history.append((e.index, decode_configuration(e.data)))

    @property
    def latest(self) -> Configuration:
        return self._history[-1][1]

    @property
    def latest_index(self) -> int:
        return self._history[-1][0]

    @property
    def committed(self) -> Configuration:
        return self._history[0][1]

    @property
    def pending(self) -> bool:
        """A configuration in the log is not committed yet."""
        return len(self._history) > 1

    def append(self, index: int, config: Configuration) -> None:
        self._history.append((index, config))

    def truncate(self, index: int) -> bool:
        """Entries from ``index`` on were dropped: returns whether the latest one changed."""
        history = self._history
        if history[-1][0] < index:
            return False
        while len(history) > 1 and history[-1][0] >= index:
            history.pop()
        return True

    def commit_to(self, commit: int) -> None:
        history = self._history
        while len(history) > 1 and history[1][0] <= commit:
            history.pop(0)

    def reset(self, index: int, config: Configuration) -> None:
        """A snapshot through ``index`` replaced the log."""
        self._history = [(index, config)]


def with_learner(config: Configuration, member: Member) -> Configuration:
    """``config`` plus ``member`` as a non-voter (it is promoted once caught up)."""
    for m in config.members:
        if m.id == member.id:
            raise ProposalRejected(f"{member.id} is already a member")
        if member.address and m.address == member.address:
            raise ProposalRejected(f"address {member.address} is already used by {m.id}")
    learner = Member(member.id, member.address, False, member.http_address)
    return Configuration((*config.members, learner))


def without(config: Configuration, node_id: str) -> Configuration:
    if config.get(node_id) is None:
        raise ProposalRejected(f"{node_id} is not a member")
    remaining = tuple(m for m in config.members if m.id != node_id)
    if not any(m.voter for m in remaining):
        raise ProposalRejected("cannot remove the last voter")
    return Configuration(remaining)


def with_voter(config: Configuration, node_id: str) -> Configuration:
    """``config`` with the non-voter ``node_id`` promoted."""
    return Configuration(
        tuple(
            Member(m.id, m.address, True, m.http_address) if m.id == node_id else m
            for m in config.members
        )
    )
