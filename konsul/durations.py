"""Go-style durations (``500ms``, ``1s``, ``2m``, ``1h30m``), as the guide and the API use them."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)")

FORM = "a Go-style duration such as 500ms, 1s, 2m or 1h30m"


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError for anything that is not one.

    A bare ``0`` is accepted (as Go accepts it); every other number needs a unit.
    """
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"not a duration: {text!r} (expected {FORM})")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"not a duration: {text!r} (expected {FORM})")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact Go-style spelling for a duration we produced ourselves."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    if s % 60 or s == 0:
        return f"{s}s"
    return f"{s // 60}m" if s % 3600 else f"{s // 3600}h"
