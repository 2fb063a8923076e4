"""manifests/: the kubectl-apply path, rendered from the chart; stale files fail here."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.chart.helm import CRD_PATH, KUBE_VERSION, crd_schema, of_kind, one
from tests.processes import REPO

MANIFESTS = REPO / "manifests"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def test_manifests_match_a_fresh_render() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "render-manifests.py"), "--check"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 0, (
        "manifests/ or the chart's CRD/schema copies are stale: run scripts/render-manifests.py"
        f"\n{result.stdout[-4000:]}{result.stderr[-2000:]}")


def test_crd_manifest_is_the_operators_crd() -> None:
    assert (MANIFESTS / "crd.yaml").read_text() == CRD_PATH.read_text()


def test_operator_manifest_validates_and_installs_everything() -> None:
    docs = load("operator.yaml")
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert docs[0] is namespace  # kubectl apply creates in file order
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"} <= kinds
    assert not kinds & {"KonsulCluster", "ServiceMonitor", "PrometheusRule", "Pod"}
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        assert "helm.sh/chart" not in labels and labels.get(
            "app.kubernetes.io/managed-by") != "Helm", doc["metadata"]["name"]
        if doc["kind"] != "Namespace" and doc["kind"] not in ("ClusterRole",
                                                              "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "konsul"


def test_examples_validate_against_the_crd() -> None:
    schema = crd_schema()
    plain = one(load("examples/konsulcluster.yaml"), "KonsulCluster")
    monitored = one(load("examples/konsulcluster-monitoring.yaml"), "KonsulCluster")
    for kc in (plain, monitored):
        jsonschema.validate(kc, schema)
        assert kc["metadata"]["namespace"] == "konsul"
    assert plain["spec"]["replicas"] == 3
    assert not plain["spec"]["monitoring"]["serviceMonitor"]["enabled"]
    assert monitored["spec"]["monitoring"]["serviceMonitor"]["enabled"] is True
    assert monitored["spec"]["monitoring"]["prometheusRule"]["enabled"] is True
    assert plain["metadata"]["name"] != monitored["metadata"]["name"]
    assert len(of_kind(load("examples/konsulcluster.yaml"), "KonsulCluster")) == 1
