"""The operator's own Prometheus metrics (served on ``--metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "konsul_operator_reconcile", "Reconcile calls", ["result"], registry=REGISTRY
)
RECONCILE_ERRORS = Counter(
    "konsul_operator_reconcile_errors", "Reconcile calls that failed", registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "konsul_operator_reconcile_duration_seconds", "Time spent in one reconcile",
    registry=REGISTRY,
)
STEPS = Counter(
    "konsul_operator_steps", "Steps taken, by type", ["step"], registry=REGISTRY
)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)
