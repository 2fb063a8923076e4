"""Konsul on a real Kubernetes (kind): the chart, the image and the operator together.

The scenarios are the functions of tests/k8s_helpers.py, which make test also runs against kmock
(tests/chart/test_scenarios_kmock.py). They run in file order on one cluster. Without docker or
kind every test is skipped with one reason (see conftest.py).
"""

from __future__ import annotations

import json
import re

from e2e.kind.conftest import IMAGE_B, NAMESPACE
from e2e.kind_driver import KindDriver, run, tool
from tests import k8s_helpers as k8s
from tests.processes import REPO, http


def test_operator_is_up_and_serves_metrics(driver: KindDriver) -> None:
    deployment = driver.get_json("deployment", "konsul-operator")
    assert deployment["status"].get("availableReplicas") == 1
    url = (f"{driver.proxy.url}/api/v1/namespaces/{NAMESPACE}/services/"
           "konsul-operator:metrics/proxy/metrics")
    text = k8s.wait_for(driver, lambda: _text(url), 60, "operator /metrics")
    assert "konsul_operator_reconcile" in text


def _text(url: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: str = resp.read().decode()
            return body
    except OSError:
        return None


def test_create_becomes_available(driver: KindDriver) -> None:
    k8s.scenario_create(driver, 3)
    # Printer columns and the scale subresource are wired.
    out = driver.kubectl("get", "konsulcluster", driver.name).stdout
    assert "True" in out and "e2e-" in out
    scale = json.loads(driver.kubectl("get", "--raw", f"/apis/konsul.io/v1alpha1/namespaces/"
                                      f"{NAMESPACE}/konsulclusters/{driver.name}/scale").stdout)
    assert scale["status"]["replicas"] == 3


def test_write_data(ledger: k8s.Ledger) -> None:
    k8s.scenario_write(ledger)


def test_helm_test_reports_a_leader(driver: KindDriver) -> None:
    # Fails (non-zero exit) unless the hook pod exits 0, i.e. /cluster/status named a leader.
    out = driver.helm("test", driver.release_name, timeout=300).stdout
    assert re.search(r"Phase:\s+Succeeded", out), out


def test_scale_3_5_3(driver: KindDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_scale(driver, ledger, (5, 3))


def test_leader_pod_deleted(driver: KindDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_leader_pod_deleted(driver, ledger)


def test_rolling_restart_by_image_change_under_writes(driver: KindDriver,
                                                       ledger: k8s.Ledger) -> None:
    k8s.scenario_rolling_restart(driver, ledger, IMAGE_B)


def test_follower_pod_and_claim_deleted(driver: KindDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_follower_and_claim_lost(driver, ledger)


def test_majority_lost_then_recovered(driver: KindDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_majority_lost(driver, ledger)


def test_delete_cluster(driver: KindDriver) -> None:
    k8s.scenario_delete(driver)


def test_kubectl_apply_path(driver: KindDriver) -> None:
    """The README's kubectl path on the same kind cluster: CRD, operator, example cluster."""
    env = {"KUBECONFIG": str(driver.kubeconfig)}
    kubectl, path = tool("kubectl"), "manifests"
    run(kubectl, "apply", "-f", str(REPO / path / "crd.yaml"), "-f",
        str(REPO / path / "operator.yaml"), env=env)
    run(kubectl, "-n", "konsul", "rollout", "status", "deployment/konsul-operator",
        "--timeout=300s", env=env, timeout=400)
    run(kubectl, "apply", "-f", str(REPO / path / "examples" / "konsulcluster.yaml"), env=env)
    try:
        run(kubectl, "-n", "konsul", "wait", "konsulcluster/konsul",
            "--for=condition=Available", "--timeout=600s", env=env, timeout=700)
        code, _, status = http("GET", f"{driver.proxy.url}/api/v1/namespaces/konsul/services/"
                                      "konsul:8500/proxy/cluster/status")
        assert code == 200 and status["leader_id"], status
    finally:
        run(kubectl, "delete", "-f", str(REPO / path / "examples" / "konsulcluster.yaml"),
            "--wait=true", "--timeout=300s", env=env, check=False, timeout=400)
        run(kubectl, "delete", "-f", str(REPO / path / "operator.yaml"), "--wait=false",
            env=env, check=False)
