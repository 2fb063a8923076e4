"""A sorted set of strings with O(log n) insert/remove and ordered iteration from any point.

Prefix listings over a million keys need the keys in order, and a plain sorted list would make
each insert an O(n) memmove. This is the sortedcontainers idea in miniature: a list of sorted
sublists of bounded length plus the maximum of each, so an insert is a bisect over the maxima and
an insort into one short list. (sortedcontainers itself would be one more dependency for ~80
lines.)
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from itertools import chain

_LOAD = 1000  # sublists are split beyond 2 * _LOAD


class SortedKeys:
    __slots__ = ("_len", "_lists", "_maxes")

    def __init__(self, sorted_unique: Iterable[str] = ()) -> None:
        """Build from keys already sorted and unique (a snapshot's order)."""
        items = list(sorted_unique)
        self._lists = [items[i : i + _LOAD] for i in range(0, len(items), _LOAD)]
        self._maxes = [part[-1] for part in self._lists]
        self._len = len(items)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._lists)

    def to_list(self) -> list[str]:
        return list(chain.from_iterable(self._lists))

    def add(self, key: str) -> None:
        """Insert a key that is not present (the caller's dict says so)."""
        maxes = self._maxes
        if not maxes:
            self._lists.append([key])
            maxes.append(key)
            self._len = 1
            return
        pos = bisect_left(maxes, key)
        if pos == len(maxes):
            pos -= 1
            part = self._lists[pos]
            part.append(key)
            maxes[pos] = key
        else:
            part = self._lists[pos]
            insort(part, key)
        self._len += 1
        if len(part) > 2 * _LOAD:
            half = part[_LOAD:]
            del part[_LOAD:]
            maxes[pos] = part[-1]
            self._lists.insert(pos + 1, half)
            maxes.insert(pos + 1, half[-1])

    def remove(self, key: str) -> None:
        """Remove a key that is present."""
        maxes = self._maxes
        pos = bisect_left(maxes, key)
        part = self._lists[pos]
        i = bisect_left(part, key)
        del part[i]
        self._len -= 1
        if not part:
            del self._lists[pos]
            del maxes[pos]
        elif i == len(part):
            maxes[pos] = part[-1]

    def iter_from(self, start: str) -> Iterator[str]:
        """Keys >= start, in order. The set must not change while the iterator is in use."""
        pos = bisect_left(self._maxes, start)
        lists = self._lists
        if pos == len(lists):
            return
        part = lists[pos]
        i = bisect_left(part, start)
        yield from part[i:] if i else part
        for j in range(pos + 1, len(lists)):
            yield from lists[j]

    def clear(self) -> None:
        self._lists = []
        self._maxes = []
        self._len = 0
