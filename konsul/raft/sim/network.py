"""The simulated network: delays, drops, duplicates, reorders and partitions messages.

Everything is decided by the run's seeded `random.Random`, so the same seed delivers the same
messages in the same order at the same tick. Messages are held as opaque objects with their
source and destination beside them: the network never looks inside.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass


@dataclass(slots=True)
class NetworkFaults:
    """Fault rates: the nemesis raises and lowers them, the quiet period zeroes them."""

    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability a message is delivered twice
    min_delay: int = 0  # ticks
    max_delay: int = 2  # ticks, for the ordinary case
    slow: float = 0.0  # probability a message takes a long detour (reordering across ticks)
    slow_delay: int = 40  # ticks, upper bound of a detour

    def calm(self) -> None:
        self.drop = 0.0
        self.duplicate = 0.0
        self.slow = 0.0


class Network:
    """Messages in flight, ordered by (delivery tick, random tie-break, send sequence)."""

    __slots__ = ("_blocked", "_heap", "_rng", "_seq", "delivered", "dropped", "faults", "sent")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._heap: list[tuple[int, float, int, str, str, object]] = []
        self._seq = 0
        # (src, dst) pairs that cannot talk: one-way partitions are single pairs,
        # symmetric ones both directions.
        self._blocked: set[tuple[str, str]] = set()
        self.faults = NetworkFaults()
        self.sent = 0
        self.delivered = 0
        self.dropped = 0

    # -- partitions ---------------------------------------------------------------------------

    def block(self, src: str, dst: str) -> None:
        self._blocked.add((src, dst))

    def unblock(self, src: str, dst: str) -> None:
        self._blocked.discard((src, dst))

    def isolate(self, group_a: list[str], group_b: list[str], one_way: bool = False) -> None:
        """Cut group_a from group_b (and, unless one_way, group_b from group_a)."""
        for a in group_a:
            for b in group_b:
                self._blocked.add((a, b))
                if not one_way:
                    self._blocked.add((b, a))

    def heal(self) -> None:
        self._blocked.clear()

    @property
    def partitioned(self) -> bool:
        return bool(self._blocked)

    def blocked_pairs(self) -> list[tuple[str, str]]:
        return sorted(self._blocked)

    # -- traffic ------------------------------------------------------------------------------

    def send(self, now: int, src: str, dst: str, msg: object) -> None:
        self.sent += 1
        f = self.faults
        rng = self._rng
        if (src, dst) in self._blocked or (f.drop and rng.random() < f.drop):
            self.dropped += 1
            return
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        for _ in range(copies):
            if f.slow and rng.random() < f.slow:
                delay = rng.randint(f.max_delay, f.slow_delay)
            else:
                delay = rng.randint(f.min_delay, f.max_delay)
            self._seq += 1
            heapq.heappush(self._heap, (now + delay, rng.random(), self._seq, src, dst, msg))

    def due(self, now: int) -> list[tuple[str, str, object]]:
        """Pop every message whose delivery tick has come, in delivery order.

        A partition that appeared while a message was in flight also stops it: the cut is
        between the hosts, not only at the sender.
        """
        heap = self._heap
        out: list[tuple[str, str, object]] = []
        blocked = self._blocked
        while heap and heap[0][0] <= now:
            _, _, _, src, dst, msg = heapq.heappop(heap)
            if (src, dst) in blocked:
                self.dropped += 1
                continue
            out.append((src, dst, msg))
        self.delivered += len(out)
        return out

    def in_flight(self) -> int:
        return len(self._heap)
