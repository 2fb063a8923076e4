"""values.schema.json: helm itself refuses wrong values before rendering anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.helm import CHART, VALUE_SETS, crd, helm

# (why it is wrong, the values) — each must make `helm template` fail on the schema.
WRONG_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", {"replicaCount": 3}),
    ("misspelt top-level key", {"clusters": {"enabled": True}}),
    ("image is a string, not a map", {"image": "konsul:0.1.0"}),
    ("pull policy not in the enum", {"image": {"pullPolicy": "Sometimes"}}),
    ("empty repository", {"image": {"repository": ""}}),
    ("rbac scope not namespaced/cluster", {"rbac": {"scope": "global"}}),
    ("watchNamespaces is a string", {"rbac": {"watchNamespaces": "a,b"}}),
    ("watchNamespaces entry not a DNS label", {"rbac": {"watchNamespaces": ["Bad_NS"]}}),
    ("rbac.create is a string", {"rbac": {"create": "yes"}}),
    ("metrics port is a string", {"operator": {"metricsPort": "8080"}}),
    ("liveness port out of range", {"operator": {"livenessPort": 70000}}),
    ("unknown operator key", {"operator": {"replicas": 2}}),
    ("reconcile interval zero", {"operator": {"reconcileInterval": 0}}),
    ("extraEnv entry without a name", {"operator": {"extraEnv": [{"value": "1"}]}}),
    ("serviceMonitor.enabled is a string",
     {"monitoring": {"serviceMonitor": {"enabled": "true"}}}),
    ("serviceMonitor interval not a duration",
     {"monitoring": {"serviceMonitor": {"interval": "often"}}}),
    ("cluster.enabled is a string", {"cluster": {"enabled": "true"}}),
    ("cluster name with capitals", {"cluster": {"name": "MyCluster"}}),
    ("replicas is a string", {"cluster": {"spec": {"replicas": "3"}}}),
    ("replicas zero", {"cluster": {"spec": {"replicas": 0}}}),
    ("unknown spec key (would be pruned by the API server)",
     {"cluster": {"spec": {"replica": 3}}}),
    ("storage size not a quantity", {"cluster": {"spec": {"storage": {"size": "lots"}}}}),
    ("unknown storage key", {"cluster": {"spec": {"storage": {"class": "ssd"}}}}),
    ("raft timeout not a duration",
     {"cluster": {"spec": {"raft": {"heartbeatTimeout": "1 second"}}}}),
    ("raft log level not in the enum", {"cluster": {"spec": {"raft": {"logLevel": "loud"}}}}),
    ("nodeSelector value not a string",
     {"cluster": {"spec": {"nodeSelector": {"disk": True}}}}),
    ("tests timeout is a string", {"tests": {"timeoutSeconds": "120"}}),
]


@pytest.mark.parametrize(("why", "values"), WRONG_VALUES, ids=[w for w, _ in WRONG_VALUES])
def test_schema_rejects(why: str, values: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = helm("template", "konsul", str(CHART), "-f", str(path), check=False)
    assert result.code != 0, f"accepted: {why}"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


# What the sections with required fields (and no default for them) need.
REQUIRED_SAMPLES = {"backup": {"schedule": "@daily"},
                    "restore": {"claimName": "backups", "file": "konsul-20260101T000000Z.snap"}}


def test_schema_accepts_a_full_cluster_spec(tmp_path: Path) -> None:
    """The positive control: every field of the CRD's spec, as the CRD's own defaults."""
    spec: dict[str, Any] = {}
    for key, prop in crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"]["spec"]["properties"].items():
        if "default" in prop and prop["type"] != "object":
            spec[key] = prop["default"]
        elif prop["type"] == "object" and "properties" in prop:
            spec[key] = {k: p["default"] for k, p in prop["properties"].items()
                         if "default" in p and p["type"] != "object"}
            spec[key].update(REQUIRED_SAMPLES.get(key, {}))
    assert {"replicas", "storage", "raft", "backup", "restore"} <= spec.keys()
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"enabled": True, "spec": spec}}))
    helm("template", "konsul", str(CHART), "-f", str(path))


def test_top_level_keys_of_values_and_schema_agree() -> None:
    """Every top-level key of values.yaml is in the schema, and the schema closes the top level."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(values) == set(schema["properties"])


def test_values_yaml_is_commented() -> None:
    """Every key of values.yaml (at any depth, down to where free-form Kubernetes objects begin)
    has a comment on or above its line."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        key = stripped.split(":", 1)[0]
        indent = len(line) - len(line.lstrip())
        # Keys inside free-form objects (resources, probes, security contexts) are Kubernetes'.
        if _inside_free_form(lines, i, indent):
            continue
        above = lines[i - 1].strip() if i else ""
        if not (above.startswith("#") or "#" in line.split(":", 1)[1]):
            uncommented.append(key)
    assert not uncommented, f"keys without a comment: {uncommented}"


FREE_FORM = {"resources", "livenessProbe", "readinessProbe", "podSecurityContext",
             "securityContext", "requests", "limits", "httpGet", "seccompProfile",
             "capabilities"}


def _inside_free_form(lines: list[str], index: int, indent: int) -> bool:
    for j in range(index - 1, -1, -1):
        line = lines[j]
        if not line.strip() or line.strip().startswith("#"):
            continue
        parent_indent = len(line) - len(line.lstrip())
        if parent_indent < indent:
            key = line.strip().split(":", 1)[0]
            if key in FREE_FORM:
                return True
            indent = parent_indent
            if indent == 0:
                return False
    return False


def test_schema_is_valid_draft7_and_accepts_every_ci_value_set() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for vs in VALUE_SETS:
        jsonschema.validate(vs.values(), schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    broken = {**defaults, "rbac": {**defaults["rbac"], "scope": "everywhere"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
