"""The operator's own Prometheus metrics (served on ``--metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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


# Backups (spec.backup), per cluster; the KonsulBackupTooOld alert compares the first two.
BACKUP_LAST_SUCCESS = Gauge(
    "konsul_operator_backup_last_success_timestamp_seconds",
    "When the last backup succeeded (the cluster's creation until then)",
    ["cluster_namespace", "cluster"], registry=REGISTRY,
)
BACKUP_INTERVAL = Gauge(
    "konsul_operator_backup_interval_seconds",
    "The longest gap between two scheduled backups", ["cluster_namespace", "cluster"],
    registry=REGISTRY,
)
BACKUP_SIZE = Gauge(
    "konsul_operator_backup_last_size_bytes", "Size of the last backup",
    ["cluster_namespace", "cluster"], registry=REGISTRY,
)
BACKUPS = Counter(
    "konsul_operator_backups", "Backup Jobs finished, by result",
    ["cluster_namespace", "cluster", "result"], registry=REGISTRY,
)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)
