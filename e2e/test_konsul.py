"""Konsul on a real Kubernetes, installed the way users install it (docs/kubernetes.md), with
the operator running in the cluster under its own ServiceAccount and RBAC.

The plain manifests first (`kubectl apply` in namespace konsul): the example cluster becomes
Available, kubectl shows and explains it, `kubectl delete kc` leaves the claims to the documented
retention. Then the chart (`helm install` in namespace konsul-e2e, the CRD from crds/, the
Prometheus Operator's kinds served): one cluster lives through every scenario in file order,
each starting from the converged state the previous one left, with a writer on the client
Service during every disruption and every write it was acknowledged checked on every member
after each. Figures go to the end of the output (e2e/conftest.py).
"""

from __future__ import annotations

import datetime
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from konsul_operator import crd
from konsul_operator.resources import alert_rules

from e2e import checks
from e2e.checks import Ledger, Sampler, record, wait_converged, wait_for
from e2e.driver import CHART, SLOW, Cluster, Konsul
from e2e.prometheus import Prometheus
from tests.processes import REPO

MANIFESTS = REPO / "manifests"
MONITORING_CRDS = Path(__file__).parent / "monitoring-crds.yaml"
NAMESPACE = "konsul-e2e"
RELEASE = "konsul"
IMAGE_B = "konsul:0.1.0-b"  # the same build under a second tag: an image change
# The chart as a user sets it up for this suite: a cluster with the release, monitoring of the
# nodes and of the operator, quick enough intervals for a test.
CHART_VALUES = [
    "--set", "cluster.enabled=true",
    "--set", "operator.reconcileInterval=5",
    "--set", "cluster.spec.monitoring.serviceMonitor.enabled=true",
    "--set", "cluster.spec.monitoring.serviceMonitor.interval=5s",
    "--set", "cluster.spec.monitoring.prometheusRule.enabled=true",
    "--set", "cluster.spec.monitoring.prometheusRule.interval=5s",
    "--set", "monitoring.serviceMonitor.enabled=true",
    "--set", "monitoring.serviceMonitor.interval=5s",
    "--set", "monitoring.prometheusRule.enabled=true",
]


def columns(table: str) -> dict[str, str]:
    """The one row of a `kubectl get` table, by header."""
    header, row = table.strip().splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return dict(zip(names, cells, strict=True))


# ================================================================== the plain manifests


@pytest.fixture(scope="module")
def manifests(cluster: Cluster) -> Iterator[Konsul]:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "crd.yaml"),
                    "-f", str(MANIFESTS / "operator.yaml"))
    konsul = Konsul(cluster, "konsul", "konsul")
    try:
        yield konsul
    finally:
        cluster.kubectl("delete", "-f", str(MANIFESTS / "examples" / "konsulcluster.yaml"),
                        "--ignore-not-found", "--wait=true", check=False, timeout=300)
        cluster.kubectl("delete", "-f", str(MANIFESTS / "operator.yaml"), "--ignore-not-found",
                        "--wait=true", check=False, timeout=300)


def test_manifests_example_becomes_available(manifests: Konsul) -> None:
    konsul = manifests
    konsul.kubectl("rollout", "status", "deployment/konsul-operator",
                   f"--timeout={300 * SLOW:.0f}s", timeout=320)
    operator = konsul.operator_pod()
    assert operator is not None and operator["spec"]["serviceAccountName"] == "konsul-operator"
    started = time.monotonic()
    konsul.cluster.kubectl("apply", "-f", str(MANIFESTS / "examples" / "konsulcluster.yaml"))
    konsul.kubectl("wait", "konsulcluster/konsul", "--for=condition=Available",
                   f"--timeout={300 * SLOW:.0f}s", timeout=320)
    record("manifests: kubectl apply -> kubectl wait Available", time.monotonic() - started)
    wait_converged(konsul, 3, seconds=180)
    record("manifests: kubectl apply -> 3 members ready", time.monotonic() - started)

    row = columns(konsul.kubectl("get", "konsulcluster", "konsul").stdout)
    status = konsul.status()
    assert row["REPLICAS"] == "3" and row["READY"] == "3" and row["AVAILABLE"] == "True", row
    assert row["LEADER"] == status["leader"] and re.fullmatch(r"konsul-[0-2]", row["LEADER"])
    assert re.fullmatch(r"\d+[sm]", row["AGE"]), row
    wide = columns(konsul.kubectl("get", "konsulcluster", "konsul", "-o", "wide").stdout)
    assert wide["IMAGE"] == "konsul:0.1.0", wide
    assert sorted(wide["MEMBERS"].split(",")) == ["konsul-0", "konsul-1", "konsul-2"], wide

    # kubectl explain describes every field with the CRD's own words (served, not pruned).
    explained = " ".join(konsul.cluster.kubectl("explain", "konsulcluster.spec").stdout.split())
    fields = crd.spec_schema()["properties"]
    for field in ("replicas", "image", "storage", "raft", "monitoring"):
        assert " ".join(fields[field]["description"].split()) in explained, (field, explained)
    nested = " ".join(konsul.cluster.kubectl(
        "explain", "konsulcluster.spec.raft.heartbeatTimeout").stdout.split())
    described = fields["raft"]["properties"]["heartbeatTimeout"]["description"]
    assert " ".join(described.split()) in nested, nested


def test_manifests_delete_kc_collects_what_it_owns_and_keeps_the_claims(
        manifests: Konsul) -> None:
    konsul = manifests
    with konsul.client() as client:
        client.kv_put("e2e/marker", "kept")
    claims = konsul.claims()
    assert len(claims) == 3, claims
    konsul.kubectl("delete", "konsulcluster", "konsul", f"--timeout={120 * SLOW:.0f}s",
                   timeout=150)
    # The garbage collector follows the owner references: StatefulSet, Services, PDB, pods.
    wait_for(konsul, lambda: not konsul.owned(), 120, "everything the cluster owned gone")
    # spec.storage.deleteClaimsOnDelete is false in the example: the claims stay, same uids.
    assert konsul.claims() == claims
    konsul.kubectl("delete", "pvc", *claims, f"--timeout={120 * SLOW:.0f}s", timeout=150)
    wait_for(konsul, lambda: not _volumes_of(konsul.cluster, "konsul"), 120,
             "their volumes released (reclaim policy Delete)")


def _volumes_of(cluster: Cluster, namespace: str) -> list[str]:
    return [pv["metadata"]["name"] for pv in cluster.get("pv")["items"]
            if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace]


# ================================================================== the chart


@pytest.fixture(scope="module")
def chart(cluster: Cluster) -> Iterator[Konsul]:
    cluster.kubectl("apply", "-f", str(MONITORING_CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "crd",
                    "servicemonitors.monitoring.coreos.com",
                    "prometheusrules.monitoring.coreos.com")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("label", "namespace", NAMESPACE,
                    "pod-security.kubernetes.io/enforce=restricted")
    konsul = Konsul(cluster, NAMESPACE, RELEASE)
    try:
        yield konsul
    finally:
        if cluster.run(cluster.helm_bin, "status", RELEASE, "-n", NAMESPACE,
                       check=False).returncode == 0:
            print(konsul.diagnostics())
            cluster.run(cluster.helm_bin, "uninstall", RELEASE, "-n", NAMESPACE, check=False)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", check=False,
                        timeout=300)


@pytest.fixture(scope="module")
def ledger(chart: Konsul) -> Ledger:
    return Ledger(chart)


@pytest.fixture(scope="module")
def prometheus(chart: Konsul, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(chart.cluster, NAMESPACE, tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_helm_install_runs_the_operator_under_its_own_account(chart: Konsul) -> None:
    INSTALLED["at"] = time.monotonic()
    chart.cluster.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, *CHART_VALUES,
                       "--wait", f"--timeout={300 * SLOW:.0f}s")
    record("helm install --wait (the operator Ready)", time.monotonic() - INSTALLED["at"])
    operator = chart.operator_pod()
    assert operator is not None
    account = operator["spec"]["serviceAccountName"]
    assert account == "konsul-operator"
    who = f"--as=system:serviceaccount:{NAMESPACE}:{account}"
    for verb, resource in [("patch", "konsulclusters/status"), ("delete", "pods"),
                           ("patch", "statefulsets"), ("create", "servicemonitors")]:
        allowed = chart.kubectl("auth", "can-i", verb, resource, who, check=False).stdout
        assert allowed.strip() == "yes", (verb, resource, allowed)
    # Nothing beyond the namespace: the chart's default scope is namespaced.
    elsewhere = chart.cluster.kubectl("auth", "can-i", "delete", "pods", who, "-n", "default",
                                      check=False).stdout
    assert elsewhere.strip() == "no"
    ip = operator["status"]["podIP"]
    metrics = wait_for(chart, lambda: checks.text(f"http://{ip}:8080/metrics"), 60,
                       "the operator's /metrics")
    assert "konsul_operator_reconcile_total" in metrics


def test_helm_cluster_becomes_available(chart: Konsul, ledger: Ledger) -> None:
    chart.kubectl("wait", "konsulcluster/konsul", "--for=condition=Available",
                  f"--timeout={300 * SLOW:.0f}s", timeout=320)
    available = checks.condition(chart.kc(), "Available")["lastTransitionTime"]
    wait_converged(chart, 3, seconds=180)
    record("helm install -> 3 members ready", time.monotonic() - INSTALLED["at"])
    created = (chart.kc() or {})["metadata"]["creationTimestamp"]
    record("helm: KonsulCluster created -> Available (its own timestamps)",
           _seconds(created, available))
    status = chart.status()
    assert status["bootstrapped"] is True
    assert checks.count_events(chart.events(), "Bootstrap") == 1
    # The cluster's identity for later: a marker written once, its index, the terms seen.
    with chart.client() as client:
        client.kv_put(IDENTITY_KEY, uuid.uuid4().hex)
    IDENTITY.update(_identity(chart))


INSTALLED: dict[str, float] = {}


def _seconds(start: str, end: str) -> float:
    """Seconds between two of the API's timestamps (whole seconds)."""
    return (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)
            ).total_seconds()


IDENTITY_KEY = "e2e/identity"
IDENTITY: dict[str, Any] = {}


def _identity(konsul: Konsul) -> dict[str, Any]:
    """The marker as every member holds it (value and create index: a second bootstrap would
    start an empty log), and each member's term."""
    pods = konsul.pods()
    markers, terms = set(), {}
    for name in sorted(pods):
        url = konsul.node_url(name, pods)
        code, _, body = konsul.http("GET", f"{url}/kv/{IDENTITY_KEY}?consistent", timeout=10)
        assert code == 200, (name, code, body)
        markers.add((body["value"], body["create_index"]))
        status = konsul.node_status(name, pods)
        assert status is not None
        terms[name] = status["term"]
    assert len(markers) == 1, markers
    return {"marker": markers.pop(), "terms": terms}


def test_helm_test_passes(chart: Konsul) -> None:
    out = chart.cluster.helm("test", RELEASE, "-n", NAMESPACE, timeout=300).stdout
    assert re.search(r"Phase:\s+Succeeded", out), out


def test_monitoring_objects_match_what_the_cluster_serves(chart: Konsul) -> None:
    monitor = chart.get("servicemonitor", "konsul")
    rule = chart.get("prometheusrule", "konsul")
    assert monitor is not None and rule is not None
    peers = chart.get("service", "konsul-peers")
    labels = peers["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in peers["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert labels[monitor["spec"]["jobLabel"]] == "konsul"   # job="konsul", as the rules want
    served = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    shipped = {r["alert"]: r["expr"] for g in alert_rules()["groups"] for r in g["rules"]}
    assert served == shipped
    assert {g["interval"] for g in rule["spec"]["groups"]} == {"5s"}
    owner = chart.kc()
    assert owner is not None
    for obj in (monitor, rule):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]


def test_prometheus_discovers_scrapes_and_loads_the_rules(chart: Konsul,
                                                          prometheus: Prometheus) -> None:
    def scraped() -> list[dict[str, Any]] | None:
        up = [t for t in prometheus.targets()
              if t["labels"].get("job") == "konsul" and t.get("health") == "up"]
        return up if len(up) == 3 else None

    targets = wait_for(chart, scraped, 90, "three Konsul pods scraped with job=konsul")
    assert sorted(t["labels"]["pod"] for t in targets) == ["konsul-0", "konsul-1", "konsul-2"]
    assert {t["labels"]["service"] for t in targets} == {"konsul-peers"}
    wait_for(chart, lambda: [t for t in prometheus.targets()
                             if t["labels"].get("job") == "konsul-operator"
                             and t.get("health") == "up"], 90, "the operator scraped")
    groups = {g["name"]: g for g in prometheus.rule_groups()}
    assert {"konsul-raft"} <= groups.keys(), groups.keys()
    rules = {r["name"] for r in groups["konsul-raft"]["rules"]}
    assert {"KonsulNoLeader", "KonsulInsufficientMembers", "KonsulMemberDown"} <= rules
    leaders = wait_for(chart, lambda: prometheus.query('sum(konsul_raft_is_leader{job="konsul"})'),
                       60, "konsul_raft_is_leader scraped")
    assert float(leaders[0]["value"][1]) == 1.0
    # An evaluation between the followers' first scrapes and the leader's sees a sum of 0 and
    # makes the alert pending; `for: 30s` is what keeps that from firing. It must clear first.
    wait_for(chart, lambda: not prometheus.alerts("KonsulNoLeader", "pending"), 25,
             "KonsulNoLeader not pending once every member is scraped")
    assert not prometheus.alerts("KonsulNoLeader", "firing")


def test_scale_3_5_3_with_the_operator_killed_mid_scale_up(chart: Konsul,
                                                          ledger: Ledger) -> None:
    joins_before = checks.count_events(chart.events(), "Join")
    removes_before = checks.count_events(chart.events(), "RemoveMember")
    old_operator = chart.operator_pod()
    assert old_operator is not None
    with Sampler(chart) as sampler, ledger.writer("scale") as writer:
        writer.wait_acks(10)
        started = time.monotonic()
        chart.scale(5)
        # The first new member joined: the operator is in the middle of the scale-up.
        wait_for(chart, lambda: checks.count_events(chart.events(), "Join") > joins_before, 120,
                 "the first Join of the scale-up")
        chart.kubectl("delete", "pod", old_operator["metadata"]["name"], "--grace-period=0",
                      "--force")
        wait_for(chart, lambda: (p := chart.operator_pod()) is not None
                 and p["metadata"]["uid"] != old_operator["metadata"]["uid"], 120,
                 "a new operator pod")
        wait_converged(chart, 5, seconds=240)
        record("scale 3->5 (operator killed after the first join)", time.monotonic() - started)
        checks.wait_claims(chart, 5)
        started = time.monotonic()
        chart.scale(3)
        wait_converged(chart, 3, seconds=180)
        checks.wait_claims(chart, 3)
        record("scale 5->3 (claims of removed members gone)", time.monotonic() - started)
        writer.wait_acks(len(writer.acks) + 10)
    assert not writer.failures, writer.failures[:5]
    # One membership change at a time: never two members catching up at once.
    assert all(len(non_voters) <= 1 for _, non_voters in sampler.configurations), [
        c for c in sampler.configurations if len(c[1]) > 1][:3]
    sizes = [len(voters) for voters, _ in sampler.configurations]
    assert max(sizes) == 5 and sizes[-1] == 3, sizes
    events = chart.events()
    assert checks.count_events(events, "Join") - joins_before >= 2
    assert checks.count_events(events, "RemoveMember") - removes_before == 2
    removed = [e["message"].split()[1] for e in sorted(events, key=_when)
               if e["reason"] == "RemoveMember"][-2:]
    assert removed == ["konsul-4", "konsul-3"], removed   # the highest ordinal first
    assert checks.count_events(events, "Bootstrap") == 1
    record("scale: acknowledged writes checked on every member", ledger.check(), "")


def _when(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")


def test_helm_upgrade_rolls_the_cluster_leader_last(chart: Konsul, ledger: Ledger) -> None:
    """A changed value (the image tag) rolls every node, one at a time, the leader last after a
    single leadership transfer, with writes acknowledged throughout."""
    before = {name: p.uid for name, p in chart.pods().items()}
    leader = wait_for(chart, lambda: checks.current_leader(chart), 30, "a leader")
    with Sampler(chart) as sampler, ledger.writer("roll") as writer:
        writer.wait_acks(10)
        started = time.monotonic()
        chart.cluster.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
                           "--set", f"image.tag={IMAGE_B.split(':')[1]}", "--wait",
                           f"--timeout={300 * SLOW:.0f}s")

        def rolled() -> bool:
            pods = chart.pods()
            return (all(pods.get(n) is not None and pods[n].uid != u for n, u in before.items())
                    and chart.status().get("currentImage") == IMAGE_B
                    and checks.converged(chart, 3))

        wait_for(chart, rolled, 420, f"every pod restarted on {IMAGE_B}")
        rolled_at = time.monotonic()
        sampler.sample()
        writer.wait_acks(len(writer.acks) + 10)
    record("helm upgrade (image tag) -> every pod rolled", rolled_at - started)
    record("rolling restart: longest write gap", writer.longest_gap(started, rolled_at))
    assert not writer.failures, writer.failures[:5]
    order = checks.replacement_order(before, sampler.uids)
    assert sorted(order) == sorted(before), order
    assert order[-1] == leader, f"leader {leader} not restarted last: {order}"
    assert checks.leader_changes(sampler.leaders) <= 1, sampler.leaders
    sts = chart.get("statefulset", "konsul")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_B
    record("rolling restart: acknowledged writes checked", ledger.check(), "")


def test_leader_pod_deleted(chart: Konsul, ledger: Ledger) -> None:
    old = wait_for(chart, lambda: checks.current_leader(chart), 30, "a leader")
    uid = chart.pods()[old].uid
    with ledger.writer("leader") as writer:
        writer.wait_acks(10)
        started = time.monotonic()
        chart.delete_pods(old)
        wait_for(chart, lambda: (checks.current_leader(chart) or old) != old, 90,
                 "a new leader")
        record("leader pod deleted -> a new leader", time.monotonic() - started)
        wait_for(chart, lambda: (p := chart.pods().get(old)) is not None and p.uid != uid, 120,
                 f"{old} recreated")
        wait_converged(chart, 3, seconds=180)
        record("leader pod deleted -> 3 members ready", time.monotonic() - started)
        writer.wait_acks(len(writer.acks) + 10)
    record("leader pod deleted: longest write gap", writer.longest_gap())
    assert not writer.failures, writer.failures[:5]
    ledger.check()


def test_pod0_and_its_claim_deleted_rejoins_without_a_second_bootstrap(
        chart: Konsul, ledger: Ledger) -> None:
    before = _identity(chart)
    assert before["marker"] == IDENTITY["marker"]
    removes = checks.count_events(chart.events(), "RemoveMember")
    with ledger.writer("wipe") as writer:
        writer.wait_acks(10)
        started = time.monotonic()
        chart.delete_pod_and_claim("konsul-0")
        wait_converged(chart, 3, seconds=240)
        record("pod-0 and its claim deleted -> repaired, 3 members ready",
               time.monotonic() - started)
        writer.wait_acks(len(writer.acks) + 10)
    assert not writer.failures, writer.failures[:5]
    after = _identity(chart)
    # The same cluster: the marker with the index it was first written at, on every member
    # (pod-0 included), and no member's term went back to the start of a new log.
    assert after["marker"] == before["marker"]
    assert min(after["terms"].values()) >= max(before["terms"].values()), (before, after)
    assert checks.count_events(chart.events(), "Bootstrap") == 1
    assert chart.status()["bootstrapped"] is True
    # Repaired, not merely refilled: removed and joined again, and it votes.
    assert checks.count_events(chart.events(), "RemoveMember") > removes
    wait_for(chart, lambda: (chart.node_status("konsul-0") or {}).get("catching_up") is False,
             60, "pod-0 voting again")
    record("pod-0 wipe: acknowledged writes checked", ledger.check(), "")


def test_two_of_three_pods_deleted_degrade_then_recover(chart: Konsul, ledger: Ledger) -> None:
    seen: set[tuple[str, str]] = set()
    stop = threading.Event()

    def watch() -> None:   # the conditions as a user polling the resource would see them
        while not stop.is_set():
            cond = checks.condition(chart.kc(), "Degraded")
            seen.add((cond.get("status", ""), cond.get("reason", "")))
            stop.wait(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    quorum_lost = checks.count_events(chart.events(), "QuorumLost")
    with ledger.writer("two-down") as writer:   # writes fail while no quorum: not asserted
        writer.wait_acks(10)
        watcher.start()
        started = time.monotonic()
        # Held down until the report: pods the StatefulSet recreates at once may rejoin before
        # the operator looks (on a quiet machine it missed the outage), and the report is the
        # scenario.
        chart.hold(["konsul-1", "konsul-2"])
        try:
            wait_for(chart, lambda: ("True", "QuorumLost") in seen
                     or checks.count_events(chart.events(), "QuorumLost") > quorum_lost, 120,
                     "Degraded/QuorumLost reported")
        finally:
            chart.release()
        wait_converged(chart, 3, seconds=240)
        record("two of three pods deleted -> 3 members ready", time.monotonic() - started)
        stop.set()
        writer.wait_acks(len(writer.acks) + 10)
    watcher.join(10)
    assert checks.condition(chart.kc(), "Degraded").get("status") == "False"
    record("two of three deleted: writes given up by the client during the outage",
           len(writer.failures), "")
    ledger.check()


def test_quorum_loss_fires_konsul_no_leader_and_recovery_clears_it(
        chart: Konsul, ledger: Ledger, prometheus: Prometheus) -> None:
    assert not prometheus.alerts("KonsulNoLeader", "firing")
    lost = ["konsul-1", "konsul-2"]
    survivors = {n: p.uid for n, p in chart.pods().items() if n not in lost}
    started = time.monotonic()
    chart.hold(lost)
    try:
        wait_for(chart, lambda: checks.condition(chart.kc(), "Degraded").get("reason")
                 == "QuorumLost", 120, "Degraded/QuorumLost")
        steps = _steps(chart)
        wait_for(chart, lambda: prometheus.alerts("KonsulNoLeader", "firing"), 180,
                 "KonsulNoLeader firing")
        record("quorum lost -> KonsulNoLeader firing (for: 30s)", time.monotonic() - started)
        assert checks.condition(chart.kc(), "Available").get("status") == "False"
        assert checks.condition(chart.kc(), "Degraded").get("reason") == "QuorumLost"
        # Acting without a quorum could only make it worse: no step taken, no survivor
        # replaced, for the 30 s and more the alert took.
        assert _steps(chart) == steps
        assert {n: p.uid for n, p in chart.pods().items() if n in survivors} == survivors
    finally:
        released = time.monotonic()
        chart.release()
    wait_for(chart, lambda: not prometheus.alerts("KonsulNoLeader", "firing")
             and not prometheus.alerts("KonsulNoLeader", "pending"), 180,
             "KonsulNoLeader cleared")
    record("pods back -> KonsulNoLeader cleared", time.monotonic() - released)
    wait_converged(chart, 3, seconds=240)
    ledger.check()


STEPS = ("Bootstrap", "Join", "RemoveMember", "TransferLeadership", "ScaleStatefulSet",
         "DeleteClaims", "RestartPod")


def _steps(konsul: Konsul) -> dict[str, int]:
    """How many of each step the operator has taken (its events)."""
    events = konsul.events()
    return {step: checks.count_events(events, step) for step in STEPS}


def test_helm_uninstall_leaves_only_what_the_docs_keep(chart: Konsul, ledger: Ledger) -> None:
    """With storage.deleteClaimsOnDelete turned on by an upgrade (the manifests' cluster kept its
    claims), uninstalling leaves the CRD alone: helm never deletes what crds/ installed."""
    record("acknowledged writes checked on every member, all scenarios", ledger.check(), "")
    chart.cluster.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
                       "--set", "cluster.spec.storage.deleteClaimsOnDelete=true")
    wait_for(chart, lambda: (chart.get("statefulset", "konsul")["spec"]
                             .get("persistentVolumeClaimRetentionPolicy") or {})
             .get("whenDeleted") == "Delete", 60, "the StatefulSet told to delete its claims")
    started = time.monotonic()
    chart.cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait",
                       f"--timeout={300 * SLOW:.0f}s")

    def left() -> list[str]:
        kinds = ("konsulclusters,statefulsets,deployments,pods,services,"
                 "poddisruptionbudgets,persistentvolumeclaims,serviceaccounts,roles,"
                 "rolebindings,configmaps,secrets,servicemonitors,prometheusrules,"
                 "networkpolicies,jobs")
        names = chart.kubectl("get", kinds, "-o", "name").stdout.split()
        # What every namespace has by itself.
        return [n for n in names if n not in ("serviceaccount/default",
                                              "configmap/kube-root-ca.crt")]

    wait_for(chart, lambda: not left(), 180, "nothing of the release left")
    record("helm uninstall -> nothing left (claims deleted with the StatefulSet)",
           time.monotonic() - started)
    cluster_wide = chart.cluster.kubectl("get", "clusterroles,clusterrolebindings", "-o",
                                         "name").stdout.split()
    assert not [n for n in cluster_wide if f"{NAMESPACE}-konsul" in n], cluster_wide
    assert chart.cluster.get("crd", "konsulclusters.konsul.io") is not None
    wait_for(chart, lambda: not _volumes_of(chart.cluster, NAMESPACE), 120,
             "the claims' volumes released")


def test_monitoring_crds_are_ours_to_remove(cluster: Cluster) -> None:
    cluster.kubectl("delete", "-f", str(MONITORING_CRDS), "--wait=true")
