"""Run the real helm binary on charts/konsul and read what it renders.

helm is installed into .venv/bin/helm by scripts/install-helm.sh (which `make test` runs first);
each call gets its own empty HOME so no user configuration or cache leaks in.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.processes import REPO

CHART = REPO / "charts" / "konsul"
CRD_PATH = REPO / "deploy" / "crd" / "konsulcluster.yaml"
MONITORING_API = "monitoring.coreos.com/v1"
KUBE_VERSION = "1.31"  # the kubectl/helm wheel's Kubernetes; kubernetes-validate checks against it


def helm_path() -> str:
    found = os.environ.get("HELM") or str(REPO / ".venv" / "bin" / "helm")
    if Path(found).exists():
        return found
    on_path = shutil.which("helm")
    if on_path is None:
        raise AssertionError("helm is missing: run scripts/install-helm.sh (make test does)")
    return on_path


@dataclass(frozen=True)
class HelmResult:
    code: int
    stdout: str
    stderr: str


def helm(*args: str, check: bool = True) -> HelmResult:
    with tempfile.TemporaryDirectory() as home:
        proc = subprocess.run(
            [helm_path(), *args], capture_output=True, text=True, timeout=60,
            env={**os.environ, "HOME": home}, cwd=REPO,
        )
    result = HelmResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return result


@dataclass(frozen=True)
class ValueSet:
    """A named set of values: a file under charts/konsul/ci/ (None: the defaults)."""

    name: str
    file: str | None

    def args(self) -> list[str]:
        return ["-f", str(CHART / "ci" / self.file)] if self.file else []

    def values(self) -> dict[str, Any]:
        """The defaults merged with the file (a deep merge, as helm does for maps)."""
        merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
        if self.file:
            _merge(merged, yaml.safe_load((CHART / "ci" / self.file).read_text()))
        return merged


def _merge(base: dict[str, Any], top: dict[str, Any]) -> None:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


VALUE_SETS = [
    ValueSet("default", None),
    ValueSet("namespaced", "namespaced-values.yaml"),
    ValueSet("cluster-monitoring", "cluster-monitoring-values.yaml"),
    ValueSet("storage-scheduling", "storage-scheduling-values.yaml"),
]


def template(value_set: ValueSet, monitoring_api: bool, *extra: str,
             namespace: str = "konsul") -> list[dict[str, Any]]:
    """`helm template` of the chart as release "konsul" (CRDs included), parsed (a fresh copy:
    the render itself is cached, the chart does not change during a run)."""
    args = ("template", "konsul", str(CHART), "--namespace", namespace, "--include-crds",
            *value_set.args(), *extra)
    if monitoring_api:
        args += ("--api-versions", MONITORING_API)
    return copy.deepcopy(_rendered(args))


@functools.lru_cache(maxsize=64)
def _rendered(args: tuple[str, ...]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def crd_schema(strict: bool = True) -> dict[str, Any]:
    """The CRD's openAPIV3Schema as JSON Schema. ``strict``: objects that declare properties
    reject unknown ones, where the API server would silently prune them (a chart typo would then
    vanish without an error)."""
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return _strict(schema) if strict else schema


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]
