"""The run's trace: a ring of recent events for the violation report, and an optional digest
of every event so that two runs of one seed can be compared bit for bit.

Events are stored as tuples and formatted only when a report is printed: formatting every
delivered message would cost more than the run itself.
"""

from __future__ import annotations

import hashlib
from collections import deque


class Trace:
    __slots__ = ("_digest", "echo", "events", "total")

    def __init__(self, keep: int = 40, digest: bool = False, echo: bool = False) -> None:
        self.events: deque[tuple[int, str, str, object]] = deque(maxlen=keep)
        self._digest = hashlib.blake2b(digest_size=16) if digest else None
        self.echo = echo
        self.total = 0

    def add(self, tick: int, node: str, kind: str, detail: object = "") -> None:
        self.total += 1
        event = (tick, node, kind, detail)
        self.events.append(event)
        if self._digest is not None:
            self._digest.update(repr(event).encode())
        if self.echo:
            print(format_event(event))

    def hexdigest(self) -> str:
        return self._digest.hexdigest() if self._digest is not None else ""

    def render(self) -> str:
        return "\n".join(format_event(e) for e in self.events)


def format_event(event: tuple[int, str, str, object]) -> str:
    tick, node, kind, detail = event
    text = detail() if callable(detail) else str(detail)
    if len(text) > 300:
        text = text[:297] + "..."
    return f"  t={tick:<6d} {tick * 10:>7d}ms {node:<6s} {kind:<12s} {text}"
