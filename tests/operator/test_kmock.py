"""The real kopf operator (a ``konsul-operator`` process) against the kmock Kubernetes emulator,
with tests/operator/harness.py playing the StatefulSet controller with real ``konsul`` processes.

One cluster lives through the whole module, scenario after scenario, as a real one would (each
scenario starts from the converged state the previous one left): create, scale 3→5→3 under
writes, image change (rolling restart under writes), leader killed, pod-0 wiped, quorum lost
and recovered, deletion.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import WriteLoad, free_subnet
from tests.operator.harness import Emulator, OperatorProcess, StatefulSetController
from tests.processes import http, wait_until

NAME = "demo"
TEMPLATE_HASH = "konsul.io/template-hash"


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.api = Emulator().start()
        self.sts = StatefulSetController(self.api, root, free_subnet()).start()
        self.operator = OperatorProcess(self.api.url, root).start()

    def stop(self) -> None:
        self.operator.stop()
        self.sts.stop()
        self.api.stop()

    # ------------------------------------------------------------------ views

    def kc(self) -> dict[str, Any]:
        body = self.api.get("KonsulCluster", NAME)
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
            code, _, body = http("GET", self.sts.process(name).url + "/cluster/status",
                                 timeout=2)
        except (OSError, KeyError):
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
        wanted = [f"{NAME}-{i}" for i in range(replicas)]
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

    def events(self) -> list[dict[str, Any]]:
        return [e for e in self.api.list("Event")
                if (e.get("involvedObject") or {}).get("name") == NAME]

    def load(self) -> WriteLoad:
        return WriteLoad(urls=self.sts.urls, writers=2, prefix=f"load{time.monotonic_ns()}/")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    environment = Env(tmp_path_factory.mktemp("kmock"))
    try:
        yield environment
    finally:
        environment.stop()
        assert not environment.sts.errors, environment.sts.errors[-1]


def kc_manifest(replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
        "metadata": {"name": NAME},
        "spec": {"replicas": replicas, "image": "konsul:0.1.0",
                 "raft": {"snapshotThreshold": 4096}},
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
                       ("PodDisruptionBudget", NAME)]:
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
    # The operator's own endpoints.
    code, _, _ = http("GET", f"http://127.0.0.1:{env.operator.liveness_port}/healthz")
    assert code == 200
    assert any(k.startswith("konsul_operator_reconcile_total") for k in env.operator.metrics())
