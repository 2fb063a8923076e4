"""Plain data shared by the Raft core, the log storage and the runtime.

Nothing here does I/O: these are the values the sans-I/O core takes and returns, and the values
the write-ahead log and the snapshot store persist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class EntryKind(IntEnum):
    """What a log entry carries."""

    COMMAND = 0  # an opaque state-machine command (bytes the store decodes)
    NOOP = 1  # the entry a new leader appends at the start of its term
    CONFIG = 2  # a membership configuration (encoded Configuration)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Member:
    """One server of the configuration: Raft id, Raft address, voting right, HTTP address."""

    id: str
    address: str
    voter: bool = True
    http_address: str = ""


@dataclass(frozen=True, slots=True)
class Configuration:
    members: tuple[Member, ...] = ()

    def voters(self) -> list[str]:
        return [m.id for m in self.members if m.voter]

    def get(self, node_id: str) -> Member | None:
        for member in self.members:
            if member.id == node_id:
                return member
        return None

    def to_wire(self) -> list[list[object]]:
        return [[m.id, m.address, m.voter, m.http_address] for m in self.members]

    @classmethod
    def from_wire(cls, raw: list[list[object]]) -> Configuration:
        return cls(tuple(Member(str(r[0]), str(r[1]), bool(r[2]), str(r[3])) for r in raw))


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves the node."""

    term: int = 0
    vote: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Identifies a snapshot: the last log entry it covers and the configuration at that point."""

    index: int
    term: int
    config: Configuration = field(default_factory=Configuration)
