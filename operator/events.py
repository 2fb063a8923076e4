"""Kubernetes Events on a KonsulCluster, posted by the operator itself.

kopf can post events too, but only together with every INFO log line of its own ("Timer
succeeded", "Handler failed temporarily" on each requeue): one event a second per cluster.
The operator turns that off and posts exactly one event per step, failure or condition change.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from konsul_operator.kube import Kube, KubeError
from konsul_operator.spec import GROUP, KIND, VERSION

log = logging.getLogger("konsul_operator")
COMPONENT = "konsul-operator"


@dataclass
class Recorder:
    """Collects (type, reason, message) during a reconcile; ``flush`` posts them."""

    pending: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, kind: str, reason: str, message: str) -> None:
        self.pending.append((kind, reason, message))

    async def flush(self, kube: Kube, body: Mapping[str, Any]) -> None:
        events, self.pending = self.pending, []
        for kind, reason, message in events:
            await post(kube, body, kind, reason, message)


async def post(kube: Kube, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    meta = body["metadata"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta.get("uid", ""),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await kube.create(event)
    except (KubeError, OSError) as exc:  # an event lost is no reason to fail a reconcile
        log.warning("could not post event %s: %s", reason, exc)
