"""Pod DNS for the kmock harness's processes (on PYTHONPATH only for them).

A pod resolves ``<pod>.<headless>.<namespace>.svc`` through the cluster's DNS; here the names are
in the file ``KMOCK_HOSTS`` names (``/etc/hosts`` syntax, rewritten by the harness as pods come
and go), read again on every lookup. Other names resolve as usual. (A bind mount over
``/etc/hosts`` in a mount namespace of its own did this before, but this machine's sandbox drops
such mounts when the real ``/etc/hosts`` changes.) The test process itself uses ``install``: it
follows redirects to those names.

A node runs on asyncio's own loop here, not uvloop: uvloop resolves in C (libuv), past
``socket.getaddrinfo``. The image and the e2e plane run it on uvloop.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

_getaddrinfo = socket.getaddrinfo
_hosts = ""


def _lookup(name: str) -> str | None:
    try:
        with open(_hosts) as f:
            for line in f:
                ip, *names = line.split()
                if name in names:
                    return ip
    except (OSError, ValueError):
        return None
    return None


def _pod_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str | bytes) and _hosts:
        found = _lookup(host.decode() if isinstance(host, bytes) else host)
        if found is not None:
            host = found
    return _getaddrinfo(host, *args, **kwargs)


def install(hosts: str) -> None:
    """Resolve the names in ``hosts`` (a path) from it, in this process, from now on."""
    global _hosts
    _hosts = hosts
    socket.getaddrinfo = _pod_getaddrinfo


if os.environ.get("KMOCK_HOSTS"):
    install(os.environ["KMOCK_HOSTS"])
    sys.modules["uvloop"] = None  # type: ignore[assignment]  # import uvloop: ImportError
