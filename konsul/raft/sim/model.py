"""The replicated state machine the simulator runs: a set of write ids.

Each command is a unique write id; the state is the applied index, the number of writes
applied and a hash chain over them. Because state-machine safety is checked at every apply
(one command per index across all nodes), "this node's state includes write w" is exactly
"this node's applied index >= the index w committed at", which makes the linearizable-read
check exact and O(1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from konsul.raft.types import Configuration, Entry, EntryKind

_MASK = (1 << 61) - 1


def command(write_id: int, padding: int = 0) -> bytes:
    """Write ``write_id``, made ``padding`` bytes longer with spaces (which ``int`` ignores),
    to exercise the byte limits of replication."""
    return b"w%d" % write_id + b" " * padding


def write_id(data: bytes) -> int:
    return int(data[1:])


def chain(digest: int, entry: Entry) -> int:
    """The hash chain over applied entries: index, term and payload all count."""
    value = write_id(entry.data) if entry.kind == EntryKind.COMMAND else -int(entry.kind)
    return (digest * 1_000_003 + value * 7919 + entry.term) & _MASK


def decode_config(data: bytes) -> Configuration:
    return Configuration.from_wire(msgpack.unpackb(data))


@dataclass(slots=True)
class SimStateMachine:
    applied: int = 0
    applied_term: int = 0
    writes: int = 0
    digest: int = 0
    config: Configuration = field(default_factory=Configuration)

    def apply(self, entry: Entry) -> None:
        self.applied = entry.index
        self.applied_term = entry.term
        self.digest = chain(self.digest, entry)
        if entry.kind == EntryKind.COMMAND:
            self.writes += 1
        elif entry.kind == EntryKind.CONFIG:
            self.config = decode_config(entry.data)

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb([self.applied, self.applied_term, self.writes, self.digest])
        return packed

    def restore(self, data: bytes, config: Configuration) -> None:
        self.applied, self.applied_term, self.writes, self.digest = msgpack.unpackb(data)
        self.config = config
