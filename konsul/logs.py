"""Structured logs: one line per event, ``key=value`` pairs after a fixed prefix (logfmt).

``KONSUL_LOG_LEVEL`` sets the level of everything; ``KONSUL_RAFT_LOG_LEVEL`` that of the Raft
layer (loggers under ``konsul.raft``), which is chatty at debug and quiet at info.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup(level: str, raft_level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("konsul.raft").setLevel(raft_level.upper())
    # aiohttp's access log would be a second, differently shaped line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def event(logger: logging.Logger, level: int, msg: str, **fields: object) -> None:
    """Log one event with structured fields: ``event(log, logging.INFO, "taken", index=5)``."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
