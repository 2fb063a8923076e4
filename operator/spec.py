"""The KonsulCluster spec as a typed object, with the CRD's defaults applied again here.

The API server applies the schema's defaults, but the operator must not depend on it (an older
object, or an emulator that does no defaulting), so every read goes through ``parse_spec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "konsul.io"
VERSION = "v1alpha1"
PLURAL = "konsulclusters"
KIND = "KonsulCluster"

DEFAULT_IMAGE = "konsul:0.1.0"
DEFAULT_REPLICAS = 3
DEFAULT_STORAGE_SIZE = "1Gi"
HTTP_PORT = 8500
RAFT_PORT = 7000
RESTARTED_AT = "konsul.io/restartedAt"
TEMPLATE_HASH = "konsul.io/template-hash"
# Set to a time (RFC 3339) to renew every member certificate issued before it, one member at a
# time (a suspected key leak, a changed name):
#   kubectl annotate kc demo --overwrite konsul.io/renewCertificates=$(date -u +%FT%TZ)
RENEW_CERTIFICATES = "konsul.io/renewCertificates"
TLS_MOUNT = "/etc/konsul/tls"
ACL_MOUNT = "/etc/konsul/acl"
DEFAULT_CERT_VALIDITY = "2160h"  # 90 days
DEFAULT_RENEW_BEFORE = "720h"  # 30 days

# spec.raft key -> KONSUL_* variable, in the guide's order and with the guide's value forms.
RAFT_KNOBS: dict[str, str] = {
    "heartbeatTimeout": "KONSUL_RAFT_HEARTBEAT_TIMEOUT",
    "electionTimeout": "KONSUL_RAFT_ELECTION_TIMEOUT",
    "leaderLeaseTimeout": "KONSUL_RAFT_LEADER_LEASE_TIMEOUT",
    "commitTimeout": "KONSUL_RAFT_COMMIT_TIMEOUT",
    "snapshotInterval": "KONSUL_RAFT_SNAPSHOT_INTERVAL",
    "snapshotThreshold": "KONSUL_RAFT_SNAPSHOT_THRESHOLD",
    "snapshotRetention": "KONSUL_RAFT_SNAPSHOT_RETENTION",
    "maxAppendEntries": "KONSUL_RAFT_MAX_APPEND_ENTRIES",
    "trailingLogs": "KONSUL_RAFT_TRAILING_LOGS",
    "logLevel": "KONSUL_RAFT_LOG_LEVEL",
}
RAFT_DEFAULTS: dict[str, str | int] = {
    "heartbeatTimeout": "1s",
    "electionTimeout": "1s",
    "leaderLeaseTimeout": "500ms",
    "commitTimeout": "50ms",
    "snapshotInterval": "120s",
    "snapshotThreshold": 8192,
    "snapshotRetention": 2,
    "maxAppendEntries": 64,
    "trailingLogs": 10240,
    "logLevel": "info",
}


@dataclass(frozen=True)
class MonitorSpec:
    enabled: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    interval: str = "30s"


DEFAULT_BACKUP_RETENTION = 7
DEFAULT_BACKUP_SIZE = "5Gi"


@dataclass(frozen=True)
class BackupSpec:
    """``spec.backup``: scheduled backups into a volume (docs/operator.md, Backups)."""

    schedule: str  # cron, 5 fields (or @hourly, @daily, @weekly, @monthly, @yearly)
    retention: int = DEFAULT_BACKUP_RETENTION
    claim_name: str | None = None  # a claim the user made; else the operator makes one
    size: str = DEFAULT_BACKUP_SIZE
    storage_class: str | None = None
    suspend: bool = False


@dataclass(frozen=True)
class RestoreSpec:
    """``spec.restore``: seed pod-0 from a backup file in a volume, instead of starting empty."""

    claim_name: str
    file: str


@dataclass(frozen=True)
class TlsSpec:
    """TLS on the API and mutual TLS between members (on unless disabled)."""

    enabled: bool = True
    # Bring your own: a Secret with tls.crt, tls.key and ca.crt (what cert-manager writes),
    # one certificate for every member name; the operator then only mounts it.
    secret_name: str = ""
    certificate_validity: str = DEFAULT_CERT_VALIDITY
    renew_before: str = DEFAULT_RENEW_BEFORE

    @property
    def operator_managed(self) -> bool:
        return self.enabled and not self.secret_name


@dataclass(frozen=True)
class AclSpec:
    """ACL tokens (on unless disabled): the operator makes the management token and a
    read-only metrics token, and uses the former for its own calls."""

    enabled: bool = True
    default_policy: str = "deny"


@dataclass(frozen=True)
class ClusterSpec:
    replicas: int = DEFAULT_REPLICAS
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    resources: dict[str, Any] = field(default_factory=dict)
    storage_size: str = DEFAULT_STORAGE_SIZE
    storage_class: str | None = None
    delete_claims_on_delete: bool = False
    raft: dict[str, str | int] = field(default_factory=lambda: dict(RAFT_DEFAULTS))
    env: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] = field(default_factory=dict)
    topology_spread: list[dict[str, Any]] = field(default_factory=list)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    forward_writes: bool = False
    service_monitor: MonitorSpec = field(default_factory=MonitorSpec)
    prometheus_rule: MonitorSpec = field(default_factory=MonitorSpec)
    backup: BackupSpec | None = None
    restore: RestoreSpec | None = None
    tls: TlsSpec = field(default_factory=TlsSpec)
    acl: AclSpec = field(default_factory=AclSpec)


def _backup(raw: Mapping[str, Any] | None) -> BackupSpec | None:
    if not raw or not raw.get("schedule"):
        return None
    storage = raw.get("storage") or {}
    return BackupSpec(
        schedule=str(raw["schedule"]).strip(),
        retention=max(1, int(raw.get("retention", DEFAULT_BACKUP_RETENTION))),
        claim_name=storage.get("claimName") or None,
        size=str(storage.get("size") or DEFAULT_BACKUP_SIZE),
        storage_class=storage.get("storageClassName"),
        suspend=bool(raw.get("suspend", False)),
    )


def _restore(raw: Mapping[str, Any] | None) -> RestoreSpec | None:
    if not raw or not raw.get("claimName") or not raw.get("file"):
        return None
    return RestoreSpec(claim_name=str(raw["claimName"]), file=str(raw["file"]))


def _monitor(raw: Mapping[str, Any] | None) -> MonitorSpec:
    raw = raw or {}
    return MonitorSpec(
        enabled=bool(raw.get("enabled", False)),
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        interval=str(raw.get("interval", "30s")),
    )


def parse_spec(raw: Mapping[str, Any] | None) -> ClusterSpec:
    raw = raw or {}
    storage = raw.get("storage") or {}
    raft = dict(RAFT_DEFAULTS)
    raft.update({k: v for k, v in (raw.get("raft") or {}).items() if k in RAFT_KNOBS})
    monitoring = raw.get("monitoring") or {}
    return ClusterSpec(
        replicas=max(1, int(raw.get("replicas", DEFAULT_REPLICAS))),
        image=str(raw.get("image") or DEFAULT_IMAGE),
        image_pull_policy=str(raw.get("imagePullPolicy") or "IfNotPresent"),
        resources=dict(raw.get("resources") or {}),
        storage_size=str(storage.get("size") or DEFAULT_STORAGE_SIZE),
        storage_class=storage.get("storageClassName"),
        delete_claims_on_delete=bool(storage.get("deleteClaimsOnDelete", False)),
        raft=raft,
        env=[dict(e) for e in raw.get("env") or []],
        node_selector=dict(raw.get("nodeSelector") or {}),
        tolerations=[dict(t) for t in raw.get("tolerations") or []],
        affinity=dict(raw.get("affinity") or {}),
        topology_spread=[dict(t) for t in raw.get("topologySpreadConstraints") or []],
        pod_annotations={str(k): str(v) for k, v in (raw.get("podAnnotations") or {}).items()},
        forward_writes=bool(raw.get("forwardWrites", False)),
        service_monitor=_monitor(monitoring.get("serviceMonitor")),
        prometheus_rule=_monitor(monitoring.get("prometheusRule")),
        backup=_backup(raw.get("backup")),
        restore=_restore(raw.get("restore")),
        tls=_tls(raw.get("tls")),
        acl=_acl(raw.get("acl")),
    )


def _tls(raw: Mapping[str, Any] | None) -> TlsSpec:
    raw = raw or {}
    return TlsSpec(
        enabled=bool(raw.get("enabled", True)),
        secret_name=str(raw.get("secretName") or ""),
        certificate_validity=str(raw.get("certificateValidity") or DEFAULT_CERT_VALIDITY),
        renew_before=str(raw.get("renewBefore") or DEFAULT_RENEW_BEFORE),
    )


def _acl(raw: Mapping[str, Any] | None) -> AclSpec:
    raw = raw or {}
    return AclSpec(
        enabled=bool(raw.get("enabled", True)),
        default_policy=str(raw.get("defaultPolicy") or "deny"),
    )
