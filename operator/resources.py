"""Pure builders of everything a KonsulCluster owns: StatefulSet, Services, PDB, monitoring.

No I/O here: each function takes the cluster's identity and spec and returns a manifest dict,
so the same output is validated offline (kubernetes-validate) and applied by the operator.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Any

import yaml
from konsul_operator import names
from konsul_operator.names import DATA_VOLUME
from konsul_operator.spec import (
    ACL_MOUNT,
    GROUP,
    HTTP_PORT,
    KIND,
    RAFT_KNOBS,
    RAFT_PORT,
    RESTARTED_AT,
    TEMPLATE_HASH,
    TLS_MOUNT,
    VERSION,
    BackupSpec,
    ClusterSpec,
    RestoreSpec,
)

DATA_PATH = "/data"


@dataclass(frozen=True)
class Owner:
    """The KonsulCluster every object points back to (owner reference, names, labels)."""

    name: str
    namespace: str
    uid: str
    restarted_at: str | None = None  # the konsul.io/restartedAt annotation, if any


def tls_secret_name(owner: Owner, spec: ClusterSpec) -> str:
    """The Secret the pods mount: the operator's own, or the one the user brings."""
    return spec.tls.secret_name or names.tls_secret(owner.name)


def _tls_files(spec: ClusterSpec) -> tuple[str, str, str]:
    """(certificate, key, CA) file names in the mounted Secret."""
    if spec.tls.secret_name:  # cert-manager's layout: one certificate for every member
        return "tls.crt", "tls.key", "ca.crt"
    return "$(POD_NAME).crt", "$(POD_NAME).key", "ca.crt"


def selector_labels(owner: Owner) -> dict[str, str]:
    return {"app.kubernetes.io/name": "konsul", "app.kubernetes.io/instance": owner.name}


def labels(owner: Owner) -> dict[str, str]:
    return {**selector_labels(owner), "app.kubernetes.io/managed-by": "konsul-operator"}


def selector_string(owner: Owner) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(owner).items())


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    owner: Owner, name: str, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels(owner), **(extra_labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }


def node_env(owner: Owner, spec: ClusterSpec) -> list[dict[str, Any]]:
    """The node's KONSUL_* variables: id = pod name, Raft and HTTP addresses = the pod's DNS name
    under the headless Service. The configuration keeps a member's addresses from its join: a
    pod IP would go stale at the pod's first restart (redirects and forwarded writes to nowhere),
    the name follows the pod."""
    field_env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    host = names.pod_host(owner.name, "$(POD_NAMESPACE)", "$(POD_NAME)")
    plain = {
        "KONSUL_HOST": "0.0.0.0",
        "KONSUL_PORT": str(HTTP_PORT),
        "KONSUL_DATA_DIR": DATA_PATH,
        "KONSUL_FORWARD_WRITES": "true" if spec.forward_writes else "false",
        "KONSUL_RAFT_ENABLED": "true",
        "KONSUL_RAFT_NODE_ID": "$(POD_NAME)",
        "KONSUL_RAFT_BIND_ADDR": f"0.0.0.0:{RAFT_PORT}",
        "KONSUL_RAFT_ADVERTISE_ADDR": f"{host}:{RAFT_PORT}",
        "KONSUL_HTTP_ADVERTISE_ADDR": f"{host}:{HTTP_PORT}",
        "KONSUL_RAFT_DATA_DIR": f"{DATA_PATH}/raft",
        # Never KONSUL_RAFT_BOOTSTRAP: the operator bootstraps pod-0 once, over the API.
    }
    if spec.tls.enabled:
        cert, key, ca = _tls_files(spec)
        plain.update({
            "KONSUL_TLS_CERT_FILE": f"{TLS_MOUNT}/{cert}",
            "KONSUL_TLS_KEY_FILE": f"{TLS_MOUNT}/{key}",
            "KONSUL_TLS_CA_FILE": f"{TLS_MOUNT}/{ca}",
        })
    if spec.acl.enabled:
        plain.update({
            "KONSUL_ACL_ENABLED": "true",
            "KONSUL_ACL_DEFAULT_POLICY": spec.acl.default_policy,
            "KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN_FILE": f"{ACL_MOUNT}/token",
        })
    for key, variable in RAFT_KNOBS.items():
        plain[variable] = str(spec.raft[key])
    return field_env + [{"name": k, "value": v} for k, v in plain.items()] + list(spec.env)


def _probe(path: str, period: int, failures: int, tls: bool) -> dict[str, Any]:
    """Probes stay open with ACLs on; over TLS the kubelet does not verify the certificate."""
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTPS" if tls else "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def pod_template(owner: Owner, spec: ClusterSpec) -> dict[str, Any]:
    annotations = dict(spec.pod_annotations)
    if owner.restarted_at:
        annotations[RESTARTED_AT] = owner.restarted_at
    container: dict[str, Any] = {
        "name": "konsul",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "env": node_env(owner, spec),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "raft", "containerPort": RAFT_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": _probe("/health/live", 10, 3, spec.tls.enabled),
        "readinessProbe": _probe("/health/ready", 5, 2, spec.tls.enabled),
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": DATA_PATH}, *_secret_mounts(spec)],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.resources:
        container["resources"] = spec.resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    volumes = _secret_volumes(owner, spec)
    if volumes:
        pod_spec["volumes"] = volumes
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector
    if spec.tolerations:
        pod_spec["tolerations"] = spec.tolerations
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    if spec.topology_spread:
        pod_spec["topologySpreadConstraints"] = spec.topology_spread
    template: dict[str, Any] = {
        "metadata": {"labels": labels(owner), "annotations": annotations},
        "spec": pod_spec,
    }
    # The hash of everything above marks which pods run the current template (OnDelete: the
    # operator itself replaces outdated pods, one at a time).
    template["metadata"]["annotations"] = {**annotations, TEMPLATE_HASH: template_hash(template)}
    return template


# Readable by the node's group (fsGroup), by nobody else.
_SECRET_MODE = 0o440


def _secret_volumes(owner: Owner, spec: ClusterSpec, ca_only: bool = False
                    ) -> list[dict[str, Any]]:
    """The TLS Secret (``ca_only``: its CA certificate alone, for a client) and the
    management token."""
    volumes = []
    if spec.tls.enabled:
        tls: dict[str, Any] = {"secretName": tls_secret_name(owner, spec),
                               "defaultMode": _SECRET_MODE}
        if ca_only:
            tls["items"] = [{"key": "ca.crt", "path": "ca.crt"}]
        volumes.append({"name": "tls", "secret": tls})
    if spec.acl.enabled:
        volumes.append({"name": "acl", "secret": {
            "secretName": names.management_token_secret(owner.name), "defaultMode": _SECRET_MODE,
        }})
    return volumes


def _secret_mounts(spec: ClusterSpec) -> list[dict[str, Any]]:
    mounts = []
    if spec.tls.enabled:
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    if spec.acl.enabled:
        mounts.append({"name": "acl", "mountPath": ACL_MOUNT, "readOnly": True})
    return mounts


def template_hash(template: dict[str, Any]) -> str:
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_retention(spec: ClusterSpec) -> dict[str, str]:
    """What the StatefulSet controller does with the claims: with the cluster deleted, what
    ``storage.deleteClaimsOnDelete`` asks (the garbage collector then removes them with the
    StatefulSet); on a scale-down it keeps them, the operator deletes those of members it
    removed (a StatefulSet shrunk by hand keeps its members' data)."""
    return {"whenDeleted": "Delete" if spec.delete_claims_on_delete else "Retain",
            "whenScaled": "Retain"}


def statefulset(owner: Owner, spec: ClusterSpec, replicas: int) -> dict[str, Any]:
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage_size}},
    }
    if spec.storage_class:
        claim_spec["storageClassName"] = spec.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(owner, names.statefulset(owner.name)),
        "spec": {
            "replicas": replicas,
            "serviceName": names.headless_service(owner.name),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": claim_retention(spec),
            "selector": {"matchLabels": selector_labels(owner)},
            "template": pod_template(owner, spec),
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": DATA_VOLUME, "labels": labels(owner)},
                    "spec": claim_spec,
                }
            ],
        },
    }


def _ports() -> list[dict[str, Any]]:
    return [
        {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
        {"name": "raft", "port": RAFT_PORT, "targetPort": "raft", "protocol": "TCP"},
    ]


def headless_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            owner, names.headless_service(owner.name), {"konsul.io/service": "peers"}
        ),
        "spec": {
            "clusterIP": "None",
            # Peers must resolve each other before they are Ready (a new member is not ready
            # until it has joined and caught up).
            "publishNotReadyAddresses": True,
            "selector": selector_labels(owner),
            "ports": _ports(),
        },
    }


def client_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            owner, names.client_service(owner.name), {"konsul.io/service": "client"}
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget(owner: Owner, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, names.disruption_budget(owner.name)),
        "spec": {
            # One voluntary disruption at a time; none for a single replica (it would be an
            # outage). The operator's own pod deletions do not go through eviction.
            "maxUnavailable": 0 if replicas == 1 else 1,
            "selector": {"matchLabels": selector_labels(owner)},
        },
    }


def service_monitor(owner: Owner, spec: ClusterSpec) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "port": "http", "path": "/metrics", "interval": spec.service_monitor.interval,
    }
    if spec.tls.enabled:
        endpoint["scheme"] = "https"
        endpoint["tlsConfig"] = {
            "ca": {"secret": {"name": tls_secret_name(owner, spec), "key": "ca.crt"}},
            # Prometheus scrapes pod IPs; every member's certificate names the client Service.
            "serverName": f"{names.client_service(owner.name)}.{owner.namespace}.svc",
        }
    if spec.acl.enabled:
        endpoint["bearerTokenSecret"] = {"name": names.metrics_token_secret(owner.name),
                                         "key": "token"}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(
            owner, names.service_monitor(owner.name), spec.service_monitor.labels
        ),
        "spec": {
            "selector": {"matchLabels": {**selector_labels(owner), "konsul.io/service": "peers"}},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            # job="konsul" for every cluster: the alert rules select on it.
            "jobLabel": "app.kubernetes.io/name",
            "endpoints": [endpoint],
        },
    }


def alert_rules() -> dict[str, Any]:
    """The rule groups from the one rules file (also at deploy/alerts/konsul-rules.yaml)."""
    text = importlib_resources.files("konsul_operator").joinpath("alerts/konsul-rules.yaml")
    loaded: dict[str, Any] = yaml.safe_load(text.read_text())
    return loaded


def prometheus_rule(owner: Owner, spec: ClusterSpec) -> dict[str, Any]:
    groups = []
    for group in alert_rules()["groups"]:
        group = dict(group)
        group["interval"] = spec.prometheus_rule.interval
        groups.append(group)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _metadata(
            owner, names.prometheus_rule(owner.name), spec.prometheus_rule.labels
        ),
        "spec": {"groups": groups},
    }


# ----------------------------------------------------------------------------- backups


def backup_labels(owner: Owner, job: str) -> dict[str, str]:
    """Backup objects carry labels of their own: the members' selector must never match a
    backup Job's pod, nor the members' claims the backup volume."""
    return {"app.kubernetes.io/name": "konsul-backup", "app.kubernetes.io/instance": owner.name,
            "app.kubernetes.io/managed-by": "konsul-operator", names.JOB_LABEL: job}


def backup_claim(owner: Owner, backup: BackupSpec) -> dict[str, Any]:
    """The volume the operator makes for backups when ``spec.backup.storage`` names none.
    Not owned by the cluster: the garbage collector would delete the backups with it, when
    they are most needed (to create the cluster again)."""
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": backup.size}},
    }
    if backup.storage_class:
        claim_spec["storageClassName"] = backup.storage_class
    meta = _metadata(owner, names.backup_claim(owner.name))
    meta["labels"] = backup_labels(owner, "backup")
    del meta["ownerReferences"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
            "spec": claim_spec}


def backup_claim_name(owner: Owner, backup: BackupSpec) -> str:
    return backup.claim_name or names.backup_claim(owner.name)


def _job(owner: Owner, spec: ClusterSpec, name: str, job: str, claim: str, args: list[str],
         annotations: dict[str, str]) -> dict[str, Any]:
    """A one-shot konsulctl run with the backup volume at BACKUP_MOUNT; it writes its JSON
    answer to the termination log, where the operator reads the outcome."""
    meta = _metadata(owner, name)
    meta["labels"] = backup_labels(owner, job)
    meta["annotations"] = annotations
    container: dict[str, Any] = {
        "name": job,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["konsulctl", *_client_args(spec), *args, "--report", "/dev/termination-log"],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "backups", "mountPath": names.BACKUP_MOUNT},
                         *_secret_mounts(spec)],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": claim}},
                    *_secret_volumes(owner, spec, ca_only=True)],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector
    if spec.tolerations:
        pod_spec["tolerations"] = spec.tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": JOB_DEADLINE_SECONDS,
            "template": {"metadata": {"labels": backup_labels(owner, job)}, "spec": pod_spec},
        },
    }


JOB_DEADLINE_SECONDS = 3600


def _client_args(spec: ClusterSpec) -> list[str]:
    """konsulctl's CA and token in a secure cluster (the Secrets the Job mounts)."""
    args = []
    if spec.tls.enabled:
        args += ["--ca-file", f"{TLS_MOUNT}/ca.crt"]
    if spec.acl.enabled:
        args += ["--token-file", f"{ACL_MOUNT}/token"]
    return args


def _addresses(owner: Owner, spec: ClusterSpec, members: list[tuple[str, str]]) -> str:
    """The members (pod, IP) as konsulctl addresses: by pod IP, or with TLS by the pod's DNS
    name (what its certificate names)."""
    if spec.tls.enabled:
        return ",".join(f"https://{names.pod_host(owner.name, owner.namespace, pod)}:{HTTP_PORT}"
                        for pod, _ in members)
    return ",".join(f"{ip}:{HTTP_PORT}" for _, ip in members)


def backup_job(owner: Owner, spec: ClusterSpec, backup: BackupSpec,
               members: list[tuple[str, str]], scheduled: str, stamp: str) -> dict[str, Any]:
    """A backup now: ``konsulctl snapshot save`` into the volume, the oldest beyond the
    retention deleted. Addressed to the members (a follower redirects to the leader), as the
    operator itself talks to them."""
    args = ["--addr", _addresses(owner, spec, members), "--timeout", "60", "snapshot", "save",
            "--dir",
            names.BACKUP_MOUNT, "--prefix", names.BACKUP_FILE_PREFIX, "--keep",
            str(backup.retention)]
    return _job(owner, spec, names.backup_job(owner.name, stamp), "backup",
                backup_claim_name(owner, backup), args, {names.SCHEDULED_AT: scheduled})


def restore_digest(restore: RestoreSpec) -> str:
    return hashlib.sha256(f"{restore.claim_name}/{restore.file}".encode()).hexdigest()[:8]


def restore_job(owner: Owner, spec: ClusterSpec, restore: RestoreSpec, pod: str, pod_ip: str
                ) -> dict[str, Any]:
    """Seed pod-0 (empty, answering at ``pod_ip``) from the backup file: a new cluster that
    starts with its data (``POST /cluster/bootstrap`` with the file as body)."""
    args = ["--addr", _addresses(owner, spec, [(pod, pod_ip)]), "--timeout", "60", "cluster",
            "bootstrap",
            "--from", f"{names.BACKUP_MOUNT}/{restore.file}"]
    return _job(owner, spec, names.restore_job(owner.name, restore_digest(restore)), "restore",
                restore.claim_name, args, {})


def owned_objects(
    owner: Owner, spec: ClusterSpec, sts_replicas: int, monitoring_served: bool
) -> list[dict[str, Any]]:
    """Everything the cluster owns (and its backup volume), in the order to create it."""
    objects = [
        headless_service(owner),
        client_service(owner),
        disruption_budget(owner, spec.replicas),
        statefulset(owner, spec, sts_replicas),
    ]
    if spec.backup is not None and not spec.backup.claim_name:
        objects.append(backup_claim(owner, spec.backup))
    if monitoring_served and spec.service_monitor.enabled:
        objects.append(service_monitor(owner, spec))
    if monitoring_served and spec.prometheus_rule.enabled:
        objects.append(prometheus_rule(owner, spec))
    return objects
