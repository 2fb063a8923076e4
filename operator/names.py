"""Every name the operator gives or reads: one module, so that each is spelled once.

Kubernetes objects of a cluster named ``c`` (as spotahome/redis-operator's ``names.go`` does it):
the StatefulSet, client Service, PodDisruptionBudget, ServiceMonitor and PrometheusRule are all
``c``; the headless Service is ``c-peers``; pod ``n`` is ``c-n`` (also its node id: the node id
is the pod name); its volume claim ``data-c-n`` (the StatefulSet's claim template ``data``).
Backups: the claim the operator makes for them is ``c-backups``, a scheduled backup's Job
``c-backup-<UTC time>``, the Job that seeds pod-0 from ``spec.restore`` ``c-restore-<hash>``.
Secrets: ``c-ca`` (the CA), ``c-tls`` (member certificates), ``c-management-token`` and
``c-metrics-token``. A pod's DNS name is ``c-n.c-peers.<namespace>.svc``.

Then the words of ``status``: phases, condition types and their reasons.
"""

from __future__ import annotations

from enum import StrEnum

# ----------------------------------------------------------------------------- objects

DATA_VOLUME = "data"  # the claim template (and volume) name


def statefulset(cluster: str) -> str:
    return cluster


def client_service(cluster: str) -> str:
    return cluster


def disruption_budget(cluster: str) -> str:
    return cluster


def service_monitor(cluster: str) -> str:
    return cluster


def prometheus_rule(cluster: str) -> str:
    return cluster


def headless_service(cluster: str) -> str:
    return f"{cluster}-peers"


def pod(cluster: str, ordinal: int) -> str:
    """Also the member's node id (``KONSUL_RAFT_NODE_ID=$(POD_NAME)``)."""
    return f"{cluster}-{ordinal}"


def claim(cluster: str, ordinal: int) -> str:
    return f"{DATA_VOLUME}-{pod(cluster, ordinal)}"


def pod_host(cluster: str, namespace: str, pod_name: str) -> str:
    """A pod's stable DNS name under the headless Service (what its certificate names)."""
    return f"{pod_name}.{headless_service(cluster)}.{namespace}.svc"


def ca_secret(cluster: str) -> str:
    return f"{cluster}-ca"


def tls_secret(cluster: str) -> str:
    return f"{cluster}-tls"


def management_token_secret(cluster: str) -> str:
    return f"{cluster}-management-token"


def metrics_token_secret(cluster: str) -> str:
    return f"{cluster}-metrics-token"


METRICS_POLICY = "konsul-metrics"  # the ACL policy of the metrics token (operator:read)


def pod_ordinal(cluster: str, name: str) -> int | None:
    """The ordinal of pod (or node id) ``name`` of this cluster; None for any other name."""
    return _ordinal(f"{cluster}-", name)


def claim_ordinal(cluster: str, name: str) -> int | None:
    """The ordinal whose data claim ``name`` is; None for any other name."""
    return _ordinal(f"{DATA_VOLUME}-{cluster}-", name)


def backup_claim(cluster: str) -> str:
    return f"{cluster}-backups"


def backup_job(cluster: str, suffix: str) -> str:
    """``suffix``: the scheduled time as ``YYYYMMDD-HHMMSS`` (UTC), for a backup asked for
    with a digest of the request after it."""
    return f"{cluster}-backup-{suffix}"


def restore_job(cluster: str, digest: str) -> str:
    """``digest``: a short hash of ``spec.restore`` (a new source is a new Job)."""
    return f"{cluster}-restore-{digest}"


BACKUP_FILE_PREFIX = "konsul"  # in the backup volume: <prefix>-<UTC time>.snap
BACKUP_MOUNT = "/backups"
JOB_LABEL = "konsul.io/job"  # backup | restore
SCHEDULED_AT = "konsul.io/scheduled-at"  # on a backup Job: the time it stands for
RECORDED = "konsul.io/recorded"  # on a finished Job: its outcome is in status
BACKUP_NOW = "konsul.io/backup-now"  # on a KonsulCluster: a backup now (any new value)


def _ordinal(prefix: str, name: str) -> int | None:
    tail = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() and tail.isascii() else None


# ----------------------------------------------------------------------------- status words


class Phase(StrEnum):
    """``status.phase``."""

    PENDING = "Pending"
    BOOTSTRAPPING = "Bootstrapping"
    RUNNING = "Running"
    SCALING = "Scaling"
    RESTARTING = "Restarting"
    REPAIRING = "Repairing"
    DEGRADED = "Degraded"


class Condition(StrEnum):
    """``status.conditions[].type``."""

    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


# Condition reasons (operator-practices.md). Progressing while work remains:
BOOTSTRAPPING = "Bootstrapping"
SCALING_UP = "ScalingUp"
SCALING_DOWN = "ScalingDown"
ROLLING_RESTART = "RollingRestart"
REPAIRING = "Repairing"
RENEWING_CERTIFICATES = "RenewingCertificates"
CONVERGED = "Converged"  # Progressing false
# Degraded:
QUORUM_LOST = "QuorumLost"
MEMBER_UNHEALTHY = "MemberUnhealthy"
MEMBER_NOT_REJOINING = "MemberNotRejoining"
AS_EXPECTED = "AsExpected"  # Degraded false
# Available:
QUORUM_AVAILABLE = "QuorumAvailable"
NOT_BOOTSTRAPPED = "NotBootstrapped"  # Available false before the first bootstrap
RESTORING = "Restoring"  # Progressing: pod-0 is being seeded from spec.restore
RESTORE_FAILED = "RestoreFailed"  # Degraded: the restore Job failed (nothing bootstrapped)
