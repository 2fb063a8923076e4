"""Offline checks of what the operator ships and generates: the CRD (in sync with its source,
structural, documented), sample resources against its schema (jsonschema), the generated
StatefulSet/Services/PDB (kubernetes-validate --strict), and the alert rules (promtool)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from konsul_operator import crd, reconcile, resources
from konsul_operator.observe import Snapshot
from konsul_operator.planner import Member, NodeView, Observed, PodView, plan
from konsul_operator.reconcile import build_status, merge_patch
from konsul_operator.resources import Owner
from konsul_operator.spec import RAFT_DEFAULTS, RESTARTED_AT, TEMPLATE_HASH, parse_spec

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"
OWNER = Owner(name="demo", namespace="ns", uid="0b0c7d9e-7d8e-4b8a-9a43-0f6f2f0e6c11")


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as `kubectl --validate=strict` applies it: unknown fields are errors (the API
    server would silently prune them) except where the schema preserves them."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node.setdefault("additionalProperties", False)
            if node.get("nullable") and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]  # OpenAPI's nullable, in JSON Schema
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    out["properties"]["metadata"] = {"type": "object"}
    return out


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(crd.schema()))


def examples() -> list[Path]:
    return sorted((REPO / "examples").glob("konsulcluster-*.yaml"))


# ------------------------------------------------------------------------------ the CRD


def test_crd_file_is_generated_from_its_source() -> None:
    path = REPO / "deploy" / "crd" / "konsulcluster.yaml"
    assert path.read_text() == crd.render(), (
        "deploy/crd/konsulcluster.yaml is stale: "
        "python -m konsul_operator.crd > deploy/crd/konsulcluster.yaml"
    )


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(crd.crd(), K8S_VERSION, strict=True)


def test_crd_names_subresources_and_columns() -> None:
    spec = crd.crd()["spec"]
    assert spec["group"] == "konsul.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["kc"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    assert columns == {"Replicas": 0, "Ready": 0, "Leader": 0, "Available": 0, "Age": 0,
                       "Image": 1, "Members": 1}
    # The API server prints the first match of a column's path only (a real one showed one
    # member of three for `.status.members[*].id`): every path names one value.
    for column in version["additionalPrinterColumns"]:
        assert "[*]" not in column["jsonPath"], column


def test_every_schema_field_is_described_and_typed() -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "type" not in node:
            missing.append(f"{path}: no type")
        for name, child in (node.get("properties") or {}).items():
            if name not in ("metadata", "apiVersion", "kind") and "description" not in child:
                missing.append(f"{path}.{name}: no description")
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict) and "properties" in node["items"]:
            walk(node["items"], f"{path}[]")

    walk(crd.schema(), "")
    assert not missing, missing


def test_schema_defaults_match_the_operators_own_defaults() -> None:
    spec = crd.schema()["properties"]["spec"]["properties"]
    parsed = parse_spec({})
    assert spec["replicas"]["default"] == parsed.replicas
    assert spec["image"]["default"] == parsed.image
    assert spec["storage"]["properties"]["size"]["default"] == parsed.storage_size
    assert {k: v["default"] for k, v in spec["raft"]["properties"].items()} == RAFT_DEFAULTS


# ------------------------------------------------------------------------------ samples


def test_examples_exist_and_validate() -> None:
    assert len(examples()) >= 2
    for path in examples():
        body = yaml.safe_load(path.read_text())
        validator().validate(body)


BAD_SPECS: list[tuple[str, dict[str, Any]]] = [
    ("zero replicas", {"replicas": 0}),
    ("replicas as text", {"replicas": "three"}),
    ("unknown field", {"replica": 3}),
    ("bad duration", {"raft": {"heartbeatTimeout": "soon"}}),
    ("duration without unit", {"raft": {"electionTimeout": "1000"}}),
    ("negative trailing logs", {"raft": {"trailingLogs": -1}}),
    ("zero retention", {"raft": {"snapshotRetention": 0}}),
    ("unknown raft knob", {"raft": {"heartbeat": "1s"}}),
    ("bad pull policy", {"imagePullPolicy": "Sometimes"}),
    ("bad size", {"storage": {"size": "lots"}}),
    ("monitoring flag as text", {"monitoring": {"serviceMonitor": {"enabled": "yes"}}}),
    ("labels not strings", {"podAnnotations": {"a": 1}}),
    ("empty image", {"image": ""}),
]


@pytest.mark.parametrize("spec", [s for _, s in BAD_SPECS], ids=[n for n, _ in BAD_SPECS])
def test_bad_resources_are_rejected(spec: dict[str, Any]) -> None:
    body = {"apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
            "metadata": {"name": "x"}, "spec": spec}
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(body)


def test_even_replicas_are_accepted() -> None:
    validator().validate({"apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
                          "metadata": {"name": "x"}, "spec": {"replicas": 4}})


def test_every_status_field_the_operator_writes_is_declared() -> None:
    node = NodeView("demo-0", "a:7000", "a:8500", "Leader", "demo-0", 2, 9, 9, 9, 1, True)
    obs = Observed(
        name="demo", desired_replicas=3, desired_hash="h", sts_replicas=3,
        pods=(PodView("demo-0", 0, "10.0.0.1", "old", node=node),),
        members=(Member("demo-0", "a:7000", True),), leader_id="demo-0", leader_commit=9,
        bootstrapped=True,
    )
    body = {"metadata": {"name": "demo", "namespace": "ns", "generation": 4},
            "spec": {"replicas": 3}, "status": {}}
    for step_plan in (plan(obs), plan(Observed(**{**obs.__dict__, "desired_hash": "old"}))):
        status = build_status(body, Snapshot(obs, None), step_plan, step_plan.action, "did it",
                              True, "2026-01-01T00:00:00Z")
        full = {"apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
                "metadata": {"name": "demo"}, "spec": {}, "status": status}
        validator().validate(full)
        assert status["observedGeneration"] == 4
        assert status["memberIds"] == "demo-0"   # what `kubectl get kc -o wide` shows
        assert {c["type"] for c in status["conditions"]} == {"Available", "Progressing",
                                                            "Degraded"}


# ------------------------------------------------------------------------------ generated objects


def specs() -> list[dict[str, Any]]:
    bodies = [yaml.safe_load(p.read_text()) for p in examples()]
    return [b["spec"] for b in bodies] + [{"replicas": 1}]


@pytest.mark.parametrize("raw", specs(), ids=lambda s: f"replicas={s.get('replicas')}")
def test_generated_objects_pass_strict_kubernetes_validation(raw: dict[str, Any]) -> None:
    spec = parse_spec(raw)
    objects = resources.owned_objects(OWNER, spec, spec.replicas, monitoring_served=False)
    assert [o["kind"] for o in objects] == ["Service", "Service", "PodDisruptionBudget",
                                           "StatefulSet"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


def test_statefulset_shape() -> None:
    spec = parse_spec({"replicas": 3, "raft": {"heartbeatTimeout": "2s"}, "forwardWrites": True,
                       "env": [{"name": "EXTRA", "value": "1"}]})
    sts = resources.statefulset(OWNER, spec, 3)
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert sts["spec"]["serviceName"] == "demo-peers"
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KONSUL_RAFT_NODE_ID"] == "$(POD_NAME)"
    assert env["KONSUL_RAFT_ADVERTISE_ADDR"] == "$(POD_NAME).demo-peers.$(POD_NAMESPACE).svc:7000"
    # Not the pod IP: the configuration keeps it from the join, and a restarted pod has a new one.
    assert env["KONSUL_HTTP_ADVERTISE_ADDR"] == "$(POD_NAME).demo-peers.$(POD_NAMESPACE).svc:8500"
    assert env["KONSUL_RAFT_HEARTBEAT_TIMEOUT"] == "2s"
    assert env["KONSUL_FORWARD_WRITES"] == "true" and env["EXTRA"] == "1"
    assert "KONSUL_RAFT_BOOTSTRAP" not in env  # the operator bootstraps pod-0 over the API
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


def _pod(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str | None]]:
    pod = resources.statefulset(OWNER, parse_spec(raw), 3)["spec"]["template"]["spec"]
    return pod, {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}


def test_pods_are_secure_by_default() -> None:
    pod, env = _pod({})
    container = pod["containers"][0]
    assert env["KONSUL_TLS_CERT_FILE"] == "/etc/konsul/tls/$(POD_NAME).crt"
    assert env["KONSUL_TLS_KEY_FILE"] == "/etc/konsul/tls/$(POD_NAME).key"
    assert env["KONSUL_TLS_CA_FILE"] == "/etc/konsul/tls/ca.crt"
    # Redirects and forwarded writes name the host the member's certificate carries.
    assert env["KONSUL_HTTP_ADVERTISE_ADDR"] == "$(POD_NAME).demo-peers.$(POD_NAMESPACE).svc:8500"
    assert env["KONSUL_ACL_ENABLED"] == "true" and env["KONSUL_ACL_DEFAULT_POLICY"] == "deny"
    assert env["KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN_FILE"] == "/etc/konsul/acl/token"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    assert volumes == {"tls": {"secretName": "demo-tls", "defaultMode": 0o440},
                       "acl": {"secretName": "demo-management-token", "defaultMode": 0o440}}
    mounts = {m["name"]: (m["mountPath"], m["readOnly"]) for m in container["volumeMounts"]
              if m["name"] in volumes}
    assert mounts == {"tls": ("/etc/konsul/tls", True), "acl": ("/etc/konsul/acl", True)}


def test_tls_and_acls_can_be_turned_off() -> None:
    pod, env = _pod({"tls": {"enabled": False}, "acl": {"enabled": False}})
    assert not [k for k in env if k.startswith(("KONSUL_TLS_", "KONSUL_ACL_"))]
    assert env["KONSUL_HTTP_ADVERTISE_ADDR"] == "$(POD_NAME).demo-peers.$(POD_NAMESPACE).svc:8500"
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert "volumes" not in pod
    monitor = resources.service_monitor(OWNER, parse_spec({"tls": {"enabled": False},
                                                           "acl": {"enabled": False}}))
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics",
                                               "interval": "30s"}


def test_a_brought_tls_secret_is_mounted_in_cert_managers_layout() -> None:
    pod, env = _pod({"tls": {"secretName": "konsul-cert"}})
    assert env["KONSUL_TLS_CERT_FILE"] == "/etc/konsul/tls/tls.crt"
    assert env["KONSUL_TLS_KEY_FILE"] == "/etc/konsul/tls/tls.key"
    assert {v["name"]: v["secret"]["secretName"] for v in pod["volumes"]}["tls"] == "konsul-cert"


def test_claims_follow_delete_claims_on_delete_through_the_statefulset() -> None:
    """The StatefulSet controller and the garbage collector delete the claims with the cluster
    when asked (the operator holds no finalizer to do it); a scale-down never does (the operator
    deletes the claims of members it removed itself)."""
    for asked, when_deleted in ((False, "Retain"), (True, "Delete")):
        spec = parse_spec({"storage": {"deleteClaimsOnDelete": asked}})
        policy = resources.statefulset(OWNER, spec, 3)["spec"][
            "persistentVolumeClaimRetentionPolicy"]
        assert policy == {"whenDeleted": when_deleted, "whenScaled": "Retain"}


def test_services_and_budget() -> None:
    headless = resources.headless_service(OWNER)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert resources.client_service(OWNER)["spec"]["type"] == "ClusterIP"
    assert resources.disruption_budget(OWNER, 3)["spec"]["maxUnavailable"] == 1
    assert resources.disruption_budget(OWNER, 1)["spec"]["maxUnavailable"] == 0


def template_hash(raw: dict[str, Any], restarted_at: str | None = None) -> str:
    owner = Owner(OWNER.name, OWNER.namespace, OWNER.uid, restarted_at)
    template = resources.pod_template(owner, parse_spec(raw))
    return str(template["metadata"]["annotations"][TEMPLATE_HASH])


def test_template_hash_changes_with_what_needs_a_restart_only() -> None:
    base = template_hash({"replicas": 3})
    assert template_hash({"replicas": 3}) == base
    assert template_hash({"replicas": 5}) == base  # scaling restarts nobody
    assert template_hash({"image": "konsul:9"}) != base
    assert template_hash({"raft": {"commitTimeout": "20ms"}}) != base
    assert template_hash({"podAnnotations": {"a": "b"}}) != base
    assert template_hash({}, restarted_at="2026-01-01T00:00:00Z") != base
    annotations = resources.pod_template(
        Owner("demo", "ns", "u", "2026-01-01T00:00:00Z"), parse_spec({})
    )["metadata"]["annotations"]
    assert annotations[RESTARTED_AT] == "2026-01-01T00:00:00Z"


def test_merge_patch_turns_one_template_into_another() -> None:
    old = resources.pod_template(OWNER, parse_spec({"nodeSelector": {"a": "b"}}))
    new = resources.pod_template(OWNER, parse_spec({"image": "konsul:2"}))
    patch = merge_patch(old, new)
    assert patch["spec"]["nodeSelector"] is None  # removed keys are nulled
    assert patch["spec"]["containers"][0]["image"] == "konsul:2"
    assert merge_patch(new, new) is None


# ------------------------------------------------------------------------------ monitoring


def test_monitoring_objects() -> None:
    spec = parse_spec(yaml.safe_load((REPO / "examples" / "konsulcluster-production.yaml")
                                     .read_text())["spec"])
    objects = resources.owned_objects(OWNER, spec, spec.replicas, monitoring_served=True)
    kinds = [o["kind"] for o in objects]
    assert kinds[-2:] == ["ServiceMonitor", "PrometheusRule"]
    monitor, rule = objects[-2], objects[-1]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    # TLS and ACLs are on by default: Prometheus checks the certificate against the cluster's
    # CA, by the name every member's certificate carries, and sends the read-only token.
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http", "path": "/metrics", "interval": "15s", "scheme": "https",
        "tlsConfig": {"ca": {"secret": {"name": "demo-tls", "key": "ca.crt"}},
                      "serverName": "demo.ns.svc"},
        "bearerTokenSecret": {"name": "demo-metrics-token", "key": "token"},
    }
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"KonsulNoLeader", "KonsulFrequentLeaderChanges", "KonsulReplicationLag",
            "KonsulMemberDown", "KonsulInsufficientMembers"} <= alerts
    # Not created when the monitoring API is not served.
    plain = resources.owned_objects(OWNER, spec, spec.replicas, monitoring_served=False)
    assert "ServiceMonitor" not in [o["kind"] for o in plain]


def test_rules_file_is_one_file_in_two_places() -> None:
    deployed = REPO / "deploy" / "alerts" / "konsul-rules.yaml"
    assert deployed.resolve() == (REPO / "operator" / "alerts" / "konsul-rules.yaml").resolve()


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus: "
                    "scripts/install-test-deps.sh installs it)")
    return found


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", "konsul-rules.yaml"],
                            cwd=REPO / "deploy" / "alerts", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_promtool_unit_tests() -> None:
    tests = yaml.safe_load((REPO / "deploy" / "alerts" / "konsul-rules.test.yaml").read_text())
    fired = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]
             if t["exp_alerts"]}
    assert fired == {r["alert"] for g in resources.alert_rules()["groups"] for r in g["rules"]}
    result = subprocess.run([promtool(), "test", "rules", "konsul-rules.test.yaml"],
                            cwd=REPO / "deploy" / "alerts", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


class RecordingKube:
    """The calls ``ensure_owned`` makes, against objects held in a dict."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        return obj

    async def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.patches.append((kind, body))


async def test_an_older_statefulset_gets_the_claim_retention_policy() -> None:
    """A cluster made before the policy existed (or whose deleteClaimsOnDelete changed) has its
    StatefulSet patched: the policy is all that decides the claims' fate on deletion."""
    spec = parse_spec({"storage": {"deleteClaimsOnDelete": True}})
    wanted = resources.owned_objects(OWNER, spec, 3, monitoring_served=False)
    older = {(o["kind"], o["metadata"]["name"]): copy.deepcopy(o) for o in wanted}
    del older[("StatefulSet", "demo")]["spec"]["persistentVolumeClaimRetentionPolicy"]
    kube = RecordingKube(older)
    reconcile._ensured.clear()
    await reconcile.ensure_owned(kube, OWNER, spec, False, lambda *_: None)  # type: ignore[arg-type]
    assert kube.patches == [("StatefulSet", {"spec": {"persistentVolumeClaimRetentionPolicy": {
        "whenDeleted": "Delete", "whenScaled": "Retain"}}})]
    current = RecordingKube({(o["kind"], o["metadata"]["name"]): o for o in wanted})
    reconcile._ensured.clear()
    await reconcile.ensure_owned(current, OWNER, spec, False, lambda *_: None)  # type: ignore[arg-type]
    assert current.patches == []
