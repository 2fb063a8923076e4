"""The real kopf operator (a ``konsul-operator`` process) against the kmock Kubernetes emulator,
with tests/operator/harness.py playing the StatefulSet controller with real ``konsul`` processes.

Only what a real control plane cannot reach quickly stays here: the operator killed exactly
between two steps of a scale-down and of a scale-up (crash points), a certificate renewal rolled
through member by member, backups (Jobs the harness runs as processes), and what those need (a
created cluster; a second one of even size). Scaling, rolling restarts, lost pods and volumes,
quorum loss, deletion and the garbage collector run on a real API server in e2e/test_konsul.py.
The cluster is secure by default, as the CRD makes it: TLS on the API and between members from
the operator's CA, ACLs on; the tests call the nodes with the operator's management token,
trusting its CA.
"""

from __future__ import annotations

import datetime
import functools
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.cluster_harness import WriteLoad, assert_no_acked_write_lost, free_subnet
from tests.operator.harness import (
    Emulator,
    JobController,
    OperatorProcess,
    StatefulSetController,
    secret_data,
)
from tests.processes import http, wait_until

NAME = "demo"


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = NAME  # the KonsulCluster the views below look at
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._tokens: dict[str, str] = {}
        self.api = Emulator().start()
        self.sts = StatefulSetController(self.api, root, free_subnet()).start()
        self.jobs = JobController(self.api, root, self.sts).start()
        self.operator = OperatorProcess(self.api.url, root).start()

    def stop(self) -> None:
        self.operator.stop()
        self.jobs.stop()
        self.sts.stop()
        self.api.stop()

    # ------------------------------------------------------------------ calls to the nodes

    def secret(self, suffix: str) -> dict[str, bytes]:
        found = secret_data(self.api.get("Secret", f"{self.name}-{suffix}"))
        assert found is not None, f"Secret {self.name}-{suffix}"
        return found

    def context(self) -> ssl.SSLContext:
        """Trusts the operator's CA; pod IPs are not in the certificates (their names are).
        Made once per cluster: the CA does not change, and the emulator is slow under load."""
        context = self._contexts.get(self.name)
        if context is None:
            context = ssl.create_default_context(cadata=self.secret("tls")["ca.crt"].decode())
            context.check_hostname = False
            self._contexts[self.name] = context
        return context

    def headers(self) -> dict[str, str]:
        token = self._tokens.get(self.name)
        if token is None:
            token = self._tokens[self.name] = self.secret("management-token")["token"].decode()
        return {"X-Konsul-Token": token}

    def http(self, method: str, url: str, body: Any = None, timeout: float = 10.0
             ) -> tuple[int, dict[str, str], Any]:
        return http(method, url, body, timeout, context=self.context(), headers=self.headers())

    def http_fn(self) -> Any:
        """For write loads and checks: the same context and token, fetched once."""
        return functools.partial(http, context=self.context(), headers=self.headers())

    # ------------------------------------------------------------------ views

    def kc(self) -> dict[str, Any]:
        body = self.api.get("KonsulCluster", self.name)
        assert body is not None
        return body

    def status(self) -> dict[str, Any]:
        return dict(self.kc().get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        for cond in self.status().get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return {}

    def node_status(self, name: str) -> dict[str, Any] | None:
        try:
            code, _, body = self.http("GET", self.sts.process(name).url + "/cluster/status",
                                      timeout=2)
        except (OSError, KeyError, AssertionError):  # (no Secrets yet: not up either)
            return None
        return body if code == 200 else None

    def leader(self) -> tuple[str, dict[str, Any]] | None:
        """The node that says it leads, with its status."""
        for name in sorted(self.sts.pods):
            status = self.node_status(name)
            if status and status["state"] == "Leader":
                return name, status
        return None

    def voters(self) -> list[str]:
        found = self.leader()
        if found is None:
            return []
        return sorted(p["id"] for p in found[1]["peers"] if p["voter"])

    def converged(self, replicas: int) -> bool:
        """Status says Available and not Progressing, the leader's configuration has exactly
        ``replicas`` voters, one per pod, and every pod is ready."""
        status = self.status()
        wanted = [f"{self.name}-{i}" for i in range(replicas)]
        return (
            self.condition("Available").get("status") == "True"
            and self.condition("Progressing").get("status") == "False"
            and status.get("readyReplicas") == replicas
            and self.voters() == wanted
            and sorted(self.sts.pods) == wanted
            and all(p.ready for p in self.sts.pods.values())
        )

    def wait_converged(self, replicas: int, timeout: float = 60) -> None:
        try:
            wait_until(lambda: self.converged(replicas), timeout,
                       f"{replicas} converged members")
        except AssertionError:
            print(self.operator.logs()[-6000:])
            print(self.status(), self.voters())
            raise

    def steps(self) -> dict[str, float]:
        return {k.split('"')[1]: v for k, v in self.operator.metrics().items()
                if k.startswith("konsul_operator_steps_total{")}

    def reconciles(self) -> float:
        return sum(v for k, v in self.operator.metrics().items()
                   if k.startswith("konsul_operator_reconcile_total{"))

    def events(self) -> list[dict[str, Any]]:
        return [e for e in self.api.list("Event")
                if (e.get("involvedObject") or {}).get("name") == self.name]

    def load(self) -> WriteLoad:
        return WriteLoad(urls=self.sts.urls, writers=2, prefix=f"load{time.monotonic_ns()}/",
                         http_fn=self.http_fn())

    def no_acked_write_lost(self, load: WriteLoad) -> None:
        assert_no_acked_write_lost(self.sts.urls(), load, http_fn=self.http_fn())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    environment = Env(tmp_path_factory.mktemp("kmock"))
    try:
        yield environment
    finally:
        environment.stop()
        assert not environment.sts.errors, environment.sts.errors[-1]
        assert not environment.jobs.errors, environment.jobs.errors[-1]


def kc_manifest(replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
        "metadata": {"name": NAME},
        "spec": {"replicas": replicas, "image": "konsul:0.1.0",
                 "raft": {"snapshotThreshold": 4096},
                 "monitoring": {"serviceMonitor": {"enabled": True},
                                "prometheusRule": {"enabled": True}}},
    }


def test_create_three_replicas_bootstraps_once_and_becomes_available(env: Env) -> None:
    env.api.create(kc_manifest(3))
    env.wait_converged(3, timeout=90)
    status = env.status()
    assert status["bootstrapped"] is True and status["phase"] == "Running"
    assert status["leader"] in [f"{NAME}-{i}" for i in range(3)]
    assert sorted(m["id"] for m in status["members"] if m["voter"]) == env.voters()
    steps = env.steps()
    assert steps.get("Bootstrap") == 1 and steps.get("Join") == 2, steps
    # Owned objects exist and point back to the cluster.
    uid = env.kc()["metadata"]["uid"]
    for kind, name in [("StatefulSet", NAME), ("Service", NAME), ("Service", f"{NAME}-peers"),
                       ("PodDisruptionBudget", NAME), ("ServiceMonitor", NAME),
                       ("PrometheusRule", NAME)]:
        obj = env.api.get(kind, name)
        assert obj is not None, (kind, name)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    sts = env.api.get("StatefulSet", NAME)
    assert sts is not None and sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    # The spec's Raft knob reached the node's environment.
    assert env.sts.process(f"{NAME}-0").env["KONSUL_RAFT_SNAPSHOT_THRESHOLD"] == "4096"
    reasons = {e.get("reason") for e in env.events()}
    assert {"Bootstrap", "Join"} <= reasons, reasons
    # Secure by default: HTTPS only, certificates from the operator's CA naming each member,
    # ACLs on (no token: refused), a read-only metrics token the ServiceMonitor uses.
    node0 = env.sts.process(f"{NAME}-0")
    assert node0.url.startswith("https://")
    served = served_certificate(node0.ip, 8500, env.context())
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{NAME}-0.{NAME}-peers.default.svc" in names.get_values_for_type(x509.DNSName)
    assert http("GET", node0.url + "/kv/?prefix=", context=env.context())[0] == 200  # filtered
    assert http("PUT", node0.url + "/kv/x", {"value": "1"}, context=env.context())[0] == 403
    metrics_token = {"X-Konsul-Token": env.secret("metrics-token")["token"].decode()}
    wait_until(lambda: scrape(node0.url, env.context(), metrics_token) == 200, 30,
               "the metrics token to work")
    assert scrape(node0.url, env.context(), {}) == 403
    assert http("PUT", node0.url + "/kv/x", {"value": "1"}, context=env.context(),
                headers=metrics_token)[0] == 403  # read-only: operator:read and nothing else
    monitor = env.api.get("ServiceMonitor", NAME)
    assert monitor is not None
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenSecret"] == {"name": f"{NAME}-metrics-token", "key": "token"}
    probe = sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["scheme"] == "HTTPS"
    assert env.status()["certificatesNotAfter"]
    # The operator's own endpoints.
    code, _, _ = http("GET", f"http://127.0.0.1:{env.operator.liveness_port}/healthz")
    assert code == 200
    assert any(k.startswith("konsul_operator_reconcile_total") for k in env.operator.metrics())


def claims(env: Env) -> list[str]:
    """The members' data claims (not the backup volume)."""
    return sorted(c["metadata"]["name"] for c in env.api.list("PersistentVolumeClaim")
                  if c["metadata"]["name"].startswith("data-"))


def scrape(url: str, context: ssl.SSLContext, headers: dict[str, str]) -> int:
    """The status of a GET /metrics, as Prometheus makes it."""
    request = urllib.request.Request(url + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def served_certificate(host: str, port: int, context: ssl.SSLContext) -> x509.Certificate:
    with socket.create_connection((host, port), timeout=2) as raw, context.wrap_socket(
        raw, server_hostname=host
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_certificate_renewal_rolls_through_without_a_restart(env: Env) -> None:
    """Asked to renew (the annotation), the operator gives each member a new certificate in
    turn; each node picks its new files up by itself: no pod restarts, no write fails."""
    env.wait_converged(3)
    pods = [f"{NAME}-{i}" for i in range(3)]
    before = {p: served_certificate(env.sts.process(p).ip, 8500, env.context()).serial_number
              for p in pods}
    pids = {p: env.sts.process(p).proc.pid for p in pods}  # type: ignore[union-attr]
    deleted = len(env.sts.deleted)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load = env.load().start()
    try:
        load.wait_acks(10)
        env.api.patch("KonsulCluster", NAME, {"metadata": {"annotations": {
            "konsul.io/renewCertificates": now}}})

        def renewed() -> bool:
            for p in pods:
                serial = served_certificate(env.sts.process(p).ip, 8500, env.context())
                if serial.serial_number == before[p]:
                    return False
            return env.converged(3)

        wait_until(renewed, 120, "every member serving a renewed certificate")
        load.wait_acks(len(load.acks) + 10)
    finally:
        load.stop()
    assert {p: env.sts.process(p).proc.pid for p in pods} == pids  # type: ignore[union-attr]
    assert len(env.sts.deleted) == deleted
    assert env.steps().get("RenewCertificate") == 3
    assert not load.server_errors() and not load.uncertain, load.outcomes
    env.no_acked_write_lost(load)


def test_operator_killed_mid_scale_down_converges_after_restart(env: Env) -> None:
    """3 -> 1 with the operator killed right after its first RemoveMember (between "leave" and
    "shrink"), then 1 -> 3 with it killed right after it grew the StatefulSet (between "scale
    up" and "join"): a new operator process finishes both from what it observes."""
    env.wait_converged(3)

    def operator_killed_after(reason: str, replicas: int) -> None:
        """Ask for ``replicas``, kill the operator after its next ``reason`` step, restart it
        and wait until the cluster converges."""
        def count() -> int:
            return sum(1 for e in env.events() if e.get("reason") == reason)

        before = count()
        env.api.patch("KonsulCluster", NAME, {"spec": {"replicas": replicas}})
        wait_until(lambda: count() > before, 30, f"a first {reason}")
        env.operator.kill()
        env.operator.start()
        env.wait_converged(replicas, timeout=60)

    operator_killed_after("RemoveMember", 1)
    assert claims(env) == [f"data-{NAME}-0"] or wait_until(
        lambda: claims(env) == [f"data-{NAME}-0"], 30, "claims of removed members deleted")
    operator_killed_after("ScaleStatefulSet", 3)
    assert env.status()["bootstrapped"] is True
    assert not env.steps().get("Bootstrap"), "the restarted operator bootstrapped again"


def test_backups_keep_the_retention_and_a_new_cluster_starts_from_one(env: Env) -> None:
    """spec.backup with a backup asked for (konsul.io/backup-now: the schedule's own timing is
    the planner's, tests/operator/test_backups.py) and retention 1: the older backup already in
    the volume goes. Then a second cluster whose spec.restore names the new one: its pod-0 is
    seeded, a new cluster with the data. Both clusters are secure (TLS, ACLs): the Jobs speak
    to them with their CA and token."""
    env.wait_converged(3)
    leader = env.leader()
    assert leader is not None
    url = env.sts.process(leader[0]).url
    for i in range(20):
        assert env.http("PUT", f"{url}/kv/backed/{i:02}", {"value": str(i)})[0] == 200
    volume = env.sts.claim_dir(f"{NAME}-backups")
    volume.mkdir(parents=True, exist_ok=True)
    older = volume / "konsul-20000101T000000Z.snap"  # an earlier Job's, by its name
    older.write_bytes(b"an older backup")
    env.api.patch("KonsulCluster", NAME, {
        "metadata": {"annotations": {"konsul.io/backup-now": "now"}},
        "spec": {"backup": {"schedule": "@yearly", "retention": 1,
                            "storage": {"size": "1Gi"}}}})

    def backup_status() -> dict[str, Any]:
        return dict(env.status().get("backup") or {})

    wait_until(lambda: backup_status().get("lastTrigger") == "now"
               and not backup_status().get("active")
               and (backup_status().get("lastBackup") or {}).get("job") == env.jobs.runs[-1],
               60, "the backup recorded")
    status = backup_status()
    last = status["lastBackup"]
    assert last["index"] >= 20 and last["kvKeys"] >= 20 and last["sizeBytes"] > 0, status
    assert status["backupsKept"] == 1 and "lastFailure" not in status, status
    files = sorted(p.name for p in volume.iterdir() if p.suffix == ".snap")
    assert files != [older.name] and len(files) == 1 and last["file"].endswith(files[0]), files
    reasons = [e.get("reason") for e in env.events()]
    assert reasons.count("BackupSucceeded") == 1 and reasons.count("BackupStarted") == 1
    metrics = env.operator.metrics()
    assert any(k.startswith("konsul_operator_backup_last_success_timestamp_seconds{")
               and f'cluster="{NAME}"' in k for k in metrics)

    copy = "copy"
    before = env.steps()
    old = env.node_status(leader[0])
    env.api.create({
        "apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
        "metadata": {"name": copy},
        "spec": {"replicas": 1, "storage": {"deleteClaimsOnDelete": True},
                 "restore": {"claimName": f"{NAME}-backups", "file": files[0]}},
    })
    env.name = copy  # (its own CA and token)
    try:
        def restored() -> dict[str, Any] | None:
            status = env.status()
            done = (status.get("bootstrapped") and env.node_status(f"{copy}-0")
                    and (status.get("restore") or {}).get("phase") == "Succeeded")
            return status if done else None

        # (a new cluster, as in the first scenario, and the restore Job recorded)
        status = wait_until(restored, 90, "the new cluster seeded from the backup")
        assert status["restore"]["job"] == env.jobs.runs[-1], status["restore"]
        seeded = env.sts.process(f"{copy}-0").url
        code, _, body = env.http("GET", f"{seeded}/kv/backed/19")
        assert code == 200 and body["value"] == "19", body
        new = env.node_status(f"{copy}-0")
        assert new and old and new["cluster_id"] not in ("", old["cluster_id"])
        env.name = NAME
        steps = env.steps()
        assert steps.get("SeedFromBackup", 0) == before.get("SeedFromBackup", 0) + 1
        assert steps.get("Bootstrap") == before.get("Bootstrap"), "bootstrapped empty"
    finally:
        env.name = NAME
        assert env.api.delete("KonsulCluster", copy)
        wait_until(lambda: not [p for p in env.sts.pods if p.startswith(f"{copy}-")]
                   and not [c for c in claims(env) if c.startswith(f"data-{copy}-")], 60,
                   "the second cluster's pods and claims gone")


def test_even_replicas_are_accepted_with_a_warning(env: Env) -> None:
    """A second cluster in the same namespace, of two replicas: accepted, with a warning event,
    and a PodDisruptionBudget that still allows one disruption."""
    env.name = "pair"
    env.api.create({
        "apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
        "metadata": {"name": "pair"}, "spec": {"replicas": 2},
    })
    wait_until(lambda: [e for e in env.events() if e.get("reason") == "EvenReplicas"], 30,
               "an EvenReplicas event")
    warning = next(e for e in env.events() if e.get("reason") == "EvenReplicas")
    assert warning.get("type") == "Warning"
    pdb = wait_until(lambda: env.api.get("PodDisruptionBudget", "pair"), 30, "its PDB")
    assert pdb["spec"]["maxUnavailable"] == 1
