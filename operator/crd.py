"""The KonsulCluster CustomResourceDefinition: the one source of truth.

``deploy/crd/konsulcluster.yaml`` is generated from here (``python -m konsul_operator.crd >
deploy/crd/konsulcluster.yaml``; a test fails when the two differ); the Helm chart copies that file.
The schema is structural, every field has a description (for ``kubectl explain``), defaults and
validation are declared, and every status field the operator writes is declared so the API
server does not prune it.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from konsul_operator.names import Condition, Phase
from konsul_operator.spec import (
    DEFAULT_BACKUP_RETENTION,
    DEFAULT_BACKUP_SIZE,
    DEFAULT_CERT_VALIDITY,
    DEFAULT_IMAGE,
    DEFAULT_RENEW_BEFORE,
    DEFAULT_REPLICAS,
    DEFAULT_STORAGE_SIZE,
    GROUP,
    KIND,
    PLURAL,
    RAFT_DEFAULTS,
    VERSION,
)

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"


def _s(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


def _obj(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _free(description: str) -> dict[str, Any]:
    """A Kubernetes-typed value passed through as is (validated by the API server downstream)."""
    return {"type": "object", "description": description,
            "x-kubernetes-preserve-unknown-fields": True}


def _free_list(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description,
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def _string_map(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "string"}}


RAFT_DESCRIPTIONS = {
    "heartbeatTimeout": "A follower with no word from a leader for this long starts an election.",
    "electionTimeout": "A candidate with no result retries after this (randomised).",
    "leaderLeaseTimeout": "A leader that cannot reach a majority for this long steps down.",
    "commitTimeout": "Idle heartbeat cadence of the leader.",
    "snapshotInterval": "How often a node checks whether to take a snapshot.",
    "snapshotThreshold": "Log entries since the last snapshot that trigger a new one.",
    "snapshotRetention": "Number of snapshots kept on disk.",
    "maxAppendEntries": "Maximum entries sent in one AppendEntries message.",
    "trailingLogs": "Log entries kept after a snapshot, for followers slightly behind.",
    "logLevel": "Log level of the Raft layer.",
}


def _raft_schema() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, default in RAFT_DEFAULTS.items():
        text = RAFT_DESCRIPTIONS[key]
        if key == "logLevel":
            props[key] = _s("string", text, default=default,
                            enum=["debug", "info", "warn", "warning", "error", "critical"])
        elif isinstance(default, int):
            minimum = 0 if key == "trailingLogs" else 1
            props[key] = _s("integer", text, default=default, minimum=minimum)
        else:
            props[key] = _s("string", f"{text} A duration such as 500ms, 1s or 2m.",
                            default=default, pattern=DURATION_PATTERN)
    return _obj("Raft timing, snapshot and log knobs (the clustering guide's KONSUL_RAFT_*).",
                props, default={})


def _monitor_schema(what: str, interval_text: str) -> dict[str, Any]:
    return _obj(f"Create a {what} (only when the monitoring.coreos.com/v1 API is served).", {
        "enabled": _s("boolean", f"Create the {what}.", default=False),
        "labels": _string_map(f"Extra labels on the {what} (for the Prometheus selector)."),
        "interval": _s("string", interval_text, default="30s", pattern=DURATION_PATTERN),
    }, default={})


def spec_schema() -> dict[str, Any]:
    return _obj("Desired state of a Konsul cluster.", {
        "replicas": _s("integer",
                       "Number of Konsul members (voters). Odd numbers are recommended: an even "
                       "number is accepted with a warning event.",
                       default=DEFAULT_REPLICAS, minimum=1, maximum=99),
        "image": _s("string", "Container image of the Konsul node.", default=DEFAULT_IMAGE,
                    minLength=1),
        "imagePullPolicy": _s("string", "Image pull policy of the node container.",
                              default="IfNotPresent", enum=["Always", "IfNotPresent", "Never"]),
        "resources": _free("Compute resources of the node container (requests/limits)."),
        "storage": _obj("The persistent volume of each member (one PVC per pod).", {
            "size": _s("string", "Requested size of each member's volume.",
                       default=DEFAULT_STORAGE_SIZE, pattern=QUANTITY_PATTERN),
            "storageClassName": _s("string", "Storage class of the volumes (cluster default "
                                   "when unset)."),
            "deleteClaimsOnDelete": _s("boolean", "Delete the members' PVCs when the "
                                       "KonsulCluster is deleted (kept by default).",
                                       default=False),
        }, default={}),
        "raft": _raft_schema(),
        "env": _free_list("Extra environment variables of the node container "
                          "(Kubernetes EnvVar objects)."),
        "nodeSelector": _string_map("Node labels the pods must run on."),
        "tolerations": _free_list("Tolerations of the pods."),
        "affinity": _free("Affinity of the pods."),
        "topologySpreadConstraints": _free_list("Topology spread constraints of the pods."),
        "podAnnotations": _string_map("Extra annotations on the pods (a change restarts them)."),
        "forwardWrites": _s("boolean", "Followers forward writes to the leader instead of "
                            "answering 307 (KONSUL_FORWARD_WRITES).", default=False),
        "monitoring": _obj("Prometheus Operator objects.", {
            "serviceMonitor": _monitor_schema("ServiceMonitor", "Scrape interval."),
            "prometheusRule": _monitor_schema("PrometheusRule with the Konsul alerts",
                                              "Rule evaluation interval."),
        }, default={}),
        "tls": _obj("TLS on the HTTP API and mutual TLS between members.", {
            "enabled": _s("boolean", "Serve HTTPS and speak mutual TLS between members. The "
                          "operator makes a CA and a certificate per member in Secrets it owns "
                          "(<name>-ca, <name>-tls) and renews them before they expire.",
                          default=True),
            "secretName": _s("string", "Bring your own: a Secret with tls.crt, tls.key and "
                             "ca.crt (what cert-manager writes), one certificate naming every "
                             "member (<pod>.<name>-peers.<namespace>.svc, <name>.<namespace>.svc)"
                             "; the operator then only mounts it. Nodes reload it when it "
                             "changes."),
            "certificateValidity": _s("string", "Validity of the member certificates the "
                                      "operator issues.", default=DEFAULT_CERT_VALIDITY,
                                      pattern=DURATION_PATTERN),
            "renewBefore": _s("string", "Renew a member certificate this long before it "
                              "expires (one member at a time, no restart).",
                              default=DEFAULT_RENEW_BEFORE, pattern=DURATION_PATTERN),
        }, default={}),
        "acl": _obj("ACL tokens.", {
            "enabled": _s("boolean", "Require tokens. The operator makes the management token "
                          "(Secret <name>-management-token), uses it for its own calls, and a "
                          "read-only metrics token (<name>-metrics-token) for the "
                          "ServiceMonitor.", default=True),
            "defaultPolicy": _s("string", "What no rule of a token names: deny, or allow.",
                                default="deny", enum=["deny", "allow"]),
        }, default={}),
        "backup": _backup_schema(),
        "restore": _obj(
            "Create the cluster from a backup: pod-0 is seeded from this file instead of "
            "starting empty (a new cluster id), the others join as usual. Read before the "
            "first bootstrap only.", {
                "claimName": _s("string", "A PersistentVolumeClaim holding the backup file.",
                                minLength=1),
                "file": _s("string", "The backup file's name in that volume (as konsulctl "
                           "snapshot save wrote it).", minLength=1, pattern=r"^[^/]+$"),
            }, required=["claimName", "file"]),
    })


def _backup_schema() -> dict[str, Any]:
    return _obj("Scheduled backups: a Job per backup runs `konsulctl snapshot save` into a "
                "volume; see docs/operator.md.", {
        "schedule": _s("string", "When, in cron syntax (5 fields, UTC), or @hourly, @daily, "
                       "@weekly, @monthly, @yearly. Annotate the cluster with "
                       "konsul.io/backup-now=<any new value> for one now.", minLength=1),
        "retention": _s("integer", "How many backup files to keep; older ones are deleted.",
                        default=DEFAULT_BACKUP_RETENTION, minimum=1),
        "suspend": _s("boolean", "Take no scheduled backups (backup-now still works).",
                      default=False),
        "storage": _obj("Where the backup files go.", {
            "claimName": _s("string", "An existing PersistentVolumeClaim to write them to. "
                            "Without it the operator makes <name>-backups."),
            "size": _s("string", "Size of the claim the operator makes.",
                       default=DEFAULT_BACKUP_SIZE, pattern=QUANTITY_PATTERN),
            "storageClassName": _s("string", "Storage class of the claim the operator makes."),
        }, default={}),
    }, required=["schedule"])


def _backup_status_schema() -> dict[str, Any]:
    when = "date-time"
    return _obj("Scheduled backups, as far as the operator saw them.", {
        "lastScheduleTime": _s("string", "The scheduled time of the last backup started.",
                               format=when),
        "lastTrigger": _s("string", "The konsul.io/backup-now value last acted on."),
        "nextScheduleTime": _s("string", "When the next scheduled backup is due.",
                               format=when),
        "lastSuccessTime": _s("string", "When the last backup succeeded.", format=when),
        "lastBackup": _obj("The last backup that succeeded.", {
            "job": _s("string", "Its Job."),
            "file": _s("string", "Its file in the backup volume."),
            "index": _s("integer", "The Raft index whose state it holds."),
            "term": _s("integer", "The term of that index."),
            "sizeBytes": _s("integer", "Size of the file."),
            "kvKeys": _s("integer", "Keys in it."),
            "services": _s("integer", "Service instances in it."),
            "time": _s("string", "When it was recorded.", format=when),
        }),
        "backupsKept": _s("integer", "Backup files in the volume after the last one."),
        "lastFailure": _obj("The last backup that failed.", {
            "time": _s("string", "When it was recorded.", format=when),
            "job": _s("string", "Its Job (empty: the operator could not start one)."),
            "message": _s("string", "Why."),
        }),
        "active": _s("string", "The backup Job running now, if any."),
        "message": _s("string", "What the operator did or waits for."),
    })


def _condition_schema() -> dict[str, Any]:
    return _obj("A condition: Available, Progressing or Degraded.", {
        "type": _s("string", "Available, Progressing or Degraded."),
        "status": _s("string", "True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "reason": _s("string", "Why, in one CamelCase word (e.g. QuorumLost, ScalingUp)."),
        "message": _s("string", "Details for humans."),
        "lastTransitionTime": _s("string", "When status last changed.", format="date-time"),
        "observedGeneration": _s("integer", "The generation this condition describes."),
    }, required=["type", "status"])


def status_schema() -> dict[str, Any]:
    member = _obj("One member of the Raft configuration.", {
        "id": _s("string", "Raft node id (= pod name)."),
        "pod": _s("string", "The pod running this member, if any."),
        "address": _s("string", "Raft advertise address."),
        "voter": _s("boolean", "Whether it votes (new members catch up as non-voters)."),
        "healthy": _s("boolean", "Its node answers ready (knows the leader, caught up)."),
        "leader": _s("boolean", "Whether it leads."),
    })
    return _obj("Observed state, written by the operator.", {
        "phase": _s("string", f"{', '.join(list(Phase)[:-1])} or {list(Phase)[-1]}."),
        "replicas": _s("integer", "Pods that exist."),
        "readyReplicas": _s("integer", "Voters that are ready and caught up."),
        "selector": _s("string", "Label selector of the pods (for the scale subresource)."),
        "leader": _s("string", "Node id of the current leader."),
        "members": {"type": "array", "description": "The Raft configuration as the leader "
                    "sees it.", "items": member},
        "memberIds": _s("string", "The members' ids, comma-separated (the Members column)."),
        "bootstrapped": _s("boolean", "Pod-0 was bootstrapped once; it is never again."),
        "currentImage": _s("string", "The image every member runs once converged."),
        "operation": {**_obj("The step under way.", {
            "type": _s("string", "Step type (Join, RemoveMember, RestartPod, ...)."),
            "target": _s("string", "Pod or member the step acts on."),
            "message": _s("string", "What happened."),
            "since": _s("string", "When it started.", format="date-time"),
        }), "nullable": True},
        "restartQueue": {"type": "array", "items": {"type": "string"},
                         "description": "Pods still to restart, in order (leader last)."},
        "conditions": {"type": "array", "items": _condition_schema(),
                       "description": "Available, Progressing and Degraded."},
        "observedGeneration": _s("integer", "The generation last reconciled."),
        "backup": _backup_status_schema(),
        "restore": _obj("How pod-0 was seeded from spec.restore.", {
            "file": _s("string", "The backup file."),
            "claimName": _s("string", "The volume it is in."),
            "job": _s("string", "The Job that seeds pod-0."),
            "phase": _s("string", "Pending, Running, Succeeded or Failed.",
                        enum=["Pending", "Running", "Succeeded", "Failed"]),
            "message": _s("string", "Details."),
        }),
        "certificatesNotAfter": {**_s("string", "When the first member certificate the "
                                      "operator issued expires.", format="date-time"),
                                 "nullable": True},
    })


def crd() -> dict[str, Any]:
    available = f'.status.conditions[?(@.type=="{Condition.AVAILABLE}")].status'
    columns = [
        ("Replicas", "integer", ".spec.replicas", 0),
        ("Ready", "integer", ".status.readyReplicas", 0),
        ("Leader", "string", ".status.leader", 0),
        ("Available", "string", available, 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Image", "string", ".spec.image", 1),
        # One value per column: the API server prints only the first match of a path, so
        # `.status.members[*].id` showed the first member alone.
        ("Members", "string", ".status.memberIds", 1),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": KIND.lower(),
                      "listKind": f"{KIND}List", "shortNames": ["kc"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
                "additionalPrinterColumns": [
                    {"name": n, "type": t, "jsonPath": p, **({"priority": pr} if pr else {})}
                    for n, t, p, pr in columns
                ],
                "schema": {"openAPIV3Schema": _obj(
                    "A Konsul cluster run by the konsul-operator.", {
                        "apiVersion": _s("string", "API version."),
                        "kind": _s("string", "Kind."),
                        "metadata": {"type": "object"},
                        "spec": {**spec_schema(), "default": {}},
                        "status": status_schema(),
                    })},
            }],
        },
    }


def schema() -> dict[str, Any]:
    """The openAPIV3Schema alone (what jsonschema validates samples against)."""
    version: dict[str, Any] = crd()["spec"]["versions"][0]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def render() -> str:
    header = ("# Generated by `python -m konsul_operator.crd` from operator/crd.py: edit that,\n"
              "# not this file (tests/operator/test_crd.py fails when they differ).\n")
    return header + yaml.safe_dump(crd(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
