"""The CI workflows parse and run what they claim: make test, and make e2e with kind."""

from __future__ import annotations

from typing import Any

import yaml

from tests.processes import REPO


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    return loaded


def commands(flow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for job in flow["jobs"].values()
                     for step in job["steps"])


def test_both_workflows_run_on_every_push() -> None:
    for name in ("test.yml", "e2e.yml"):
        flow: dict[Any, Any] = workflow(name)
        triggers = flow["on"] if "on" in flow else flow[True]  # YAML 1.1 reads `on` as True
        assert "push" in triggers, name


def test_test_workflow_runs_make_test() -> None:
    assert "make test" in commands(workflow("test.yml"))


def test_e2e_workflow_installs_kind_and_runs_make_e2e() -> None:
    flow = workflow("e2e.yml")
    assert "make e2e" in commands(flow)
    steps = [step for job in flow["jobs"].values() for step in job["steps"]]
    assert any((s.get("env") or {}).get("KONSUL_E2E_DRIVER") == "kind" for s in steps)
    uses = [step.get("uses", "") for job in flow["jobs"].values() for step in job["steps"]]
    assert any(u.startswith("helm/kind-action@") for u in uses)
