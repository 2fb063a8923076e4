"""The Helm chart, rendered by the real helm for several value sets, with and without the
Prometheus Operator API: lint, offline validation of every object, monitoring gates, restricted
Pod Security, RBAC that matches both the operator's flags and the calls its code makes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from konsul_operator.__main__ import parse_args
from konsul_operator.kube import KINDS
from konsul_operator.resources import Owner, statefulset
from konsul_operator.spec import parse_spec

from tests.certs import CertDir
from tests.chart.helm import (
    CHART,
    KUBE_VERSION,
    VALUE_SETS,
    ValueSet,
    crd_schema,
    helm,
    of_kind,
    one,
    template,
)
from tests.processes import REPO, KonsulProcess, free_port

MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
BUILT_IN_GROUPS = ("v1", "apps/", "rbac.authorization.k8s.io/", "policy/", "networking.k8s.io/",
                   "apiextensions.k8s.io/")

RENDERS = [(vs, api) for vs in VALUE_SETS for api in (False, True)]
RENDER_IDS = [f"{vs.name}-{'monitoring-api' if api else 'no-monitoring-api'}"
              for vs, api in RENDERS]


def _render(vs: ValueSet, api: bool) -> list[dict[str, Any]]:
    return template(vs, api)


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[vs.name for vs in VALUE_SETS])
def test_lint_strict(vs: ValueSet) -> None:
    result = helm("lint", "--strict", str(CHART), *vs.args(), check=False)
    assert result.code == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(("vs", "api"), RENDERS, ids=RENDER_IDS)
def test_every_object_validates(vs: ValueSet, api: bool) -> None:
    docs = _render(vs, api)
    built_in = [d for d in docs if d["apiVersion"].startswith(BUILT_IN_GROUPS)]
    assert {d["kind"] for d in built_in} >= {
        "ServiceAccount", "Deployment", "Service", "CustomResourceDefinition"}
    for doc in built_in:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {err.message}") from err
    schema = crd_schema()
    clusters = of_kind(docs, "KonsulCluster")
    assert len(clusters) == (1 if vs.values()["cluster"]["enabled"] else 0)
    for kc in clusters:
        jsonschema.validate(kc, schema)
    leftovers = {d["kind"] for d in docs} - {d["kind"] for d in built_in} - MONITORING_KINDS
    assert leftovers <= {"KonsulCluster"}, leftovers


@pytest.mark.parametrize(("vs", "api"), RENDERS, ids=RENDER_IDS)
def test_monitoring_objects_need_both_the_value_and_the_api(vs: ValueSet, api: bool) -> None:
    docs = _render(vs, api)
    values = vs.values()
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule")):
        wanted = api and values["monitoring"][key]["enabled"]
        assert len(of_kind(docs, kind)) == (1 if wanted else 0), (kind, vs.name, api)
        for kc in of_kind(docs, "KonsulCluster"):
            asked = values["cluster"]["spec"]["monitoring"][key]["enabled"]
            assert kc["spec"]["monitoring"][key]["enabled"] is (api and asked), (kind, api)
    if api and values["monitoring"]["serviceMonitor"]["enabled"]:
        monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_cluster_monitoring_set_exercises_both_switches() -> None:
    """The gating test above must see each monitoring object both present and absent."""
    docs_with = _render(VALUE_SETS[2], True)
    docs_without = _render(VALUE_SETS[2], False)
    assert {d["kind"] for d in docs_with} >= MONITORING_KINDS
    assert not {d["kind"] for d in docs_without} & MONITORING_KINDS


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = [(f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["spec"])
             for d in of_kind(docs, "Deployment")]
    specs += [(f"Pod/{d['metadata']['name']}", d["spec"]) for d in of_kind(docs, "Pod")]
    return specs


def assert_restricted(where: str, pod: dict[str, Any], need_tmp: bool = True) -> None:
    """Pod Security Standard "restricted", plus a read-only root filesystem."""
    sec = pod["securityContext"]
    assert sec["runAsNonRoot"] is True, where
    assert sec.get("runAsUser", 1) != 0, where
    assert sec["seccompProfile"]["type"] == "RuntimeDefault", where
    assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for container in pod["containers"]:
        csec = container["securityContext"]
        assert csec["allowPrivilegeEscalation"] is False, where
        assert csec["capabilities"]["drop"] == ["ALL"], where
        assert not csec["capabilities"].get("add"), where
        assert csec["readOnlyRootFilesystem"] is True, where
        assert not csec.get("privileged"), where
        if need_tmp:
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], where


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[vs.name for vs in VALUE_SETS])
def test_pods_meet_restricted_pod_security(vs: ValueSet) -> None:
    docs = _render(vs, False)
    specs = _pod_specs(docs)
    assert len(specs) == (2 if vs.values()["cluster"]["enabled"] else 1)
    for where, pod in specs:
        assert_restricted(where, pod)


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[vs.name for vs in VALUE_SETS])
def test_operator_deployment_flags_match_the_rbac_scope(vs: ValueSet) -> None:
    docs = _render(vs, False)
    values = vs.values()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["konsul-operator"]
    args = parse_args(container["args"])  # the operator's own parser must accept them
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (args.metrics_port, args.liveness_port) == (ports["metrics"], ports["liveness"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    roles, bindings = of_kind(docs, "Role"), of_kind(docs, "RoleBinding")
    cluster_roles = [r for r in of_kind(docs, "ClusterRole")
                     if not r["metadata"]["name"].endswith("-discovery")]
    if values["rbac"]["scope"] == "cluster":
        assert args.all_namespaces and not args.namespace
        assert len(cluster_roles) == 1 and not roles and not bindings
        granted = [(cluster_roles[0], one_binding(docs, "ClusterRoleBinding",
                                                  cluster_roles[0]["metadata"]["name"]))]
    else:
        watched = values["rbac"]["watchNamespaces"] or ["konsul"]
        assert not args.all_namespaces and args.namespace == watched
        assert not cluster_roles
        assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(watched)
        granted = [(r, one_binding(docs, "RoleBinding", r["metadata"]["name"],
                                   r["metadata"]["namespace"])) for r in roles]
    for role, binding in granted:
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account,
                                        "namespace": "konsul"}]
        assert_rules_cover_the_operator(role["rules"])


def one_binding(docs: list[dict[str, Any]], kind: str, name: str,
                namespace: str | None = None) -> dict[str, Any]:
    found = [b for b in of_kind(docs, kind) if b["metadata"]["name"] == name
             and b["metadata"].get("namespace") == namespace]
    assert len(found) == 1, (kind, name, namespace)
    return found[0]


def allowed(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


OWNED = ("Service", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule")
VERB_OF = {"get": "get", "list": "list", "create": "create", "patch": "patch",
           "patch_status": "patch", "delete": "delete"}
CALL = re.compile(r'kube\.(get|list|create|patch|patch_status|delete)\(\s*"(\w+)"')


def operator_calls() -> set[tuple[str, str]]:
    """(verb, kind) of every ``kube.<call>("<Kind>", ...)`` in the operator's source."""
    found = set()
    for source in (REPO / "operator").glob("*.py"):
        for method, kind in CALL.findall(source.read_text()):
            found.add((VERB_OF[method] + ("/status" if method == "patch_status" else ""), kind))
    return found


def resource_of(kind: str) -> tuple[str, str]:
    prefix, plural = KINDS[kind]
    return ("" if prefix == "/api/v1" else prefix.split("/")[2]), plural


def assert_rules_cover_the_operator(rules: list[dict[str, Any]]) -> None:
    """What the operator does: it creates, patches and deletes what a cluster owns, deletes pods
    and claims, watches the KonsulClusters and patches their status, posts events; plus every
    ``kube.<call>("<Kind>")`` found in its source."""
    needed: set[tuple[str, str]] = set(operator_calls())
    for kind in OWNED:
        needed |= {(verb, kind) for verb in ("get", "list", "create", "patch", "delete")}
    for kind in ("Pod", "PersistentVolumeClaim"):
        needed |= {("get", kind), ("list", kind), ("delete", kind)}
    needed |= {("get", "KonsulCluster"), ("list", "KonsulCluster"), ("watch", "KonsulCluster"),
               ("patch", "KonsulCluster"), ("patch/status", "KonsulCluster")}
    assert ("delete", "Pod") in needed and ("patch/status", "KonsulCluster") in needed
    for verb, kind in sorted(needed):
        group, plural = resource_of(kind)
        if verb.endswith("/status"):
            verb, plural = verb.removesuffix("/status"), f"{plural}/status"
        assert verb in allowed(rules, group, plural), f"{kind}: {verb} on {group}/{plural}"
    assert "create" in allowed(rules, "", "events")
    # Least privilege: no wildcards; Secrets (the clusters' CA, certificates and tokens) only
    # by name, never listed or watched (that would hand over every Secret of the namespace).
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)
    assert allowed(rules, "", "secrets") == {"get", "create", "patch", "update", "delete"}


@pytest.mark.parametrize("vs", VALUE_SETS, ids=[vs.name for vs in VALUE_SETS])
def test_discovery_clusterrole_is_read_only(vs: ValueSet) -> None:
    docs = _render(vs, False)
    discovery = [r for r in of_kind(docs, "ClusterRole")
                 if r["metadata"]["name"].endswith("-discovery")]
    assert len(discovery) == 1
    rules = discovery[0]["rules"]
    assert allowed(rules, "apiextensions.k8s.io", "customresourcedefinitions") == {
        "get", "list", "watch"}
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in rules)


def test_operator_pod_never_matches_a_cluster_selector() -> None:
    """Release "konsul" + cluster "konsul": the cluster's Services select
    name=konsul,instance=konsul; the operator's pod must not carry both."""
    docs = _render(VALUE_SETS[3], False)
    kc = one(docs, "KonsulCluster")
    owner = Owner(name=kc["metadata"]["name"], namespace="konsul", uid="u")
    selector = statefulset(owner, parse_spec(kc["spec"]), 3)["spec"]["selector"]["matchLabels"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= pod_labels.items()


@pytest.mark.parametrize("vs", [v for v in VALUE_SETS if v.values()["cluster"]["enabled"]],
                         ids=lambda v: v.name)
def test_cluster_values_reach_the_operators_statefulset(vs: ValueSet) -> None:
    """values -> KonsulCluster -> the operator's own builder -> a valid StatefulSet whose pods
    run the chart's image, with the storage and scheduling asked for, under restricted PSS."""
    docs = _render(vs, False)
    values = vs.values()
    kc = one(docs, "KonsulCluster")
    spec = parse_spec(kc["spec"])
    owner = Owner(name=kc["metadata"]["name"], namespace="konsul", uid="u")
    sts = statefulset(owner, spec, spec.replicas)
    kubernetes_validate.validate(sts, KUBE_VERSION, strict=True)
    image = values["image"]
    assert spec.image == f"{image['repository']}:{image['tag'] or '0.1.0'}"
    assert spec.replicas == values["cluster"]["spec"]["replicas"]
    wanted = values["cluster"]["spec"]
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == wanted["storage"]["size"]
    if "storageClassName" in wanted["storage"]:
        assert claim["storageClassName"] == wanted["storage"]["storageClassName"]
    pod = sts["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints"):
        if key in wanted:
            assert pod[key] == wanted[key], key
    assert pod["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"]
    # The nodes write only to their volume; no /tmp is required of the operator's template.
    assert_restricted("StatefulSet", pod, need_tmp=False)


def _network_policies(*extra: str) -> list[dict[str, Any]]:
    return of_kind(template(VALUE_SETS[0], False, "--set", "cluster.name=kv", *extra),
                   "NetworkPolicy")


def test_network_policy_keeps_the_raft_port_to_the_clusters_own_pods() -> None:
    policy = one(template(VALUE_SETS[0], False, "--set", "cluster.enabled=true",
                          "--set", "cluster.name=kv"), "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBE_VERSION, strict=True)
    # The pods it guards and the only peers on 7000 are the operator's pods of this cluster.
    pods = statefulset(Owner("kv", "konsul", "u"), parse_spec({}), 3)
    members = pods["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= members.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    raft, api = policy["spec"]["ingress"]
    assert raft["ports"] == [{"protocol": "TCP", "port": 7000}]
    assert raft["from"] == [{"podSelector": policy["spec"]["podSelector"]}]
    assert api == {"ports": [{"protocol": "TCP", "port": 8500}]}  # from anywhere by default
    narrowed = one(template(
        VALUE_SETS[0], False, "--set", "cluster.enabled=true", "--set", "cluster.name=kv",
        "--set-json", 'networkPolicy.httpFrom=[{"namespaceSelector": {"matchLabels": '
        '{"team": "web"}}}]'), "NetworkPolicy")
    assert narrowed["spec"]["ingress"][1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "web"}}}]
    # Opt-out, and nothing without a cluster of the release's own.
    assert _network_policies("--set", "cluster.enabled=true",
                             "--set", "networkPolicy.enabled=false") == []
    assert _network_policies("--set", "cluster.enabled=false") == []


def test_the_releases_cluster_is_secure_unless_opted_out() -> None:
    secure = one(template(VALUE_SETS[0], False, "--set", "cluster.enabled=true"), "KonsulCluster")
    spec = parse_spec(secure["spec"])
    assert spec.tls.enabled and spec.tls.operator_managed and spec.acl.enabled
    assert spec.acl.default_policy == "deny"
    plain = one(template(VALUE_SETS[0], False, "--set", "cluster.enabled=true",
                         "--set", "cluster.spec.tls.enabled=false",
                         "--set", "cluster.spec.acl.enabled=false"), "KonsulCluster")
    assert not parse_spec(plain["spec"]).tls.enabled
    assert not parse_spec(plain["spec"]).acl.enabled


def test_crd_is_the_operators_crd() -> None:
    chart_crd = (CHART / "crds" / "konsulcluster.yaml").read_text()
    assert chart_crd == (CHART.parent.parent / "deploy" / "crd" / "konsulcluster.yaml").read_text()
    rendered = one(template(VALUE_SETS[0], False), "CustomResourceDefinition")
    assert rendered == yaml.safe_load(chart_crd)


def _notes(*set_args: str) -> str:
    """NOTES.txt as helm renders it (helm template skips it: render it through a probe)."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "konsul"
        subprocess.run(["cp", "-r", str(CHART), str(chart)], check=True)
        (chart / "templates" / "notes-probe.yaml").write_text(
            'notes: {{ include "konsul/templates/NOTES.txt" . | toJson }}\n')
        out = helm("template", "konsul", str(chart), "--namespace", "konsul",
                   "--show-only", "templates/notes-probe.yaml", *set_args).stdout
    notes: str = yaml.safe_load(out)["notes"]
    return notes


def test_notes_tell_how_to_reach_and_check_the_cluster() -> None:
    notes = _notes("--set", "cluster.enabled=true", "--set", "cluster.name=kv")
    assert "kubectl -n konsul port-forward svc/kv 8500:8500" in notes
    assert "https://kv.konsul.svc:8500" in notes  # TLS and ACLs are on by default
    assert ("curl --cacert ca.crt -H \"X-Konsul-Token: $KONSUL_HTTP_TOKEN\" "
            "https://localhost:8500/cluster/status") in notes
    assert "get secret kv-management-token" in notes
    plain = _notes("--set", "cluster.enabled=true", "--set", "cluster.name=kv",
                   "--set", "cluster.spec.tls.enabled=false",
                   "--set", "cluster.spec.acl.enabled=false")
    assert "curl http://localhost:8500/cluster/status" in plain
    assert "wait konsulcluster/kv --for=condition=Available" in notes
    assert "helm test konsul -n konsul" in notes
    assert "WARNING" not in notes
    bare = _notes("--set", "monitoring.serviceMonitor.enabled=true")
    assert "manifests/examples/konsulcluster.yaml" in bare
    assert "does not serve monitoring.coreos.com/v1" in bare


def _test_pod_script(docs: list[dict[str, Any]]) -> tuple[str, str, str]:
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    script, url, timeout = container["args"]
    return script, url, timeout


def test_helm_test_pod_asks_the_client_service_for_a_leader(tmp_path: Path) -> None:
    """The hook pod's own script, run here against a real konsul node: exit 0 naming the leader;
    against a port nobody listens on: exit 1 at its deadline."""
    docs = template(VALUE_SETS[0], False, "--set", "cluster.enabled=true",
                    "--set", "cluster.name=kv")
    script, url, timeout = _test_pod_script(docs)
    assert url == "https://kv.konsul.svc:8500/cluster/status" and float(timeout) > 0
    pod = one(docs, "Pod")
    mounted = {v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"]
               if "secret" in v}
    assert mounted == {"tls": "kv-tls", "acl": "kv-metrics-token"}
    # As the pod runs it, against a node with TLS and ACLs: its CA and a read-only token.
    certs = CertDir(tmp_path / "tls")
    token = tmp_path / "token"
    token.write_text("metrics-token-of-the-test-pod\n")
    node = KonsulProcess(tmp_path / "node", env={
        **certs.member_env("node", ["127.0.0.1"]), "KONSUL_ACL_ENABLED": "true",
        "KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN": "metrics-token-of-the-test-pod",
    }, ssl_context=certs.client_context(), ready_path="/health/live").start()
    try:
        ok = subprocess.run([sys.executable, "-c", script, f"{node.url}/cluster/status", "20"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "CA_FILE": str(certs.ca_file),
                                 "TOKEN_FILE": str(token)})
    finally:
        node.stop()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("leader ")
    dead = f"http://127.0.0.1:{free_port()}/cluster/status"
    failed = subprocess.run([sys.executable, "-c", script, dead, "3"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "FAIL" in failed.stdout
    assert not of_kind(template(VALUE_SETS[0], False), "Pod")  # no cluster, no test pod
