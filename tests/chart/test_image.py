"""The Dockerfile, checked without a Docker engine: hadolint passes it, it parses into stages,
the final stage is a slim Python base without build tools, runs as the non-root UID the pods
use, and names console scripts that exist; .dockerignore lets in exactly what the build copies."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from konsul_operator.resources import Owner, pod_template
from konsul_operator.spec import parse_spec

from tests.chart.helm import CHART
from tests.processes import REPO

DOCKERFILE = REPO / "Dockerfile"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL"}
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "python3-dev", "libc6-dev", "cargo")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages). Joins continuation lines, drops comments and the parser
    directive, rejects unknown instructions and instructions before the first FROM (but ARG)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        assert keyword in INSTRUCTIONS, f"unknown instruction {keyword!r}"
        rest = rest.strip()
        if keyword == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            named = re.search(r"\s+AS\s+(\S+)$", rest, re.IGNORECASE)
            stages.append(Stage(base, named.group(1) if named else None))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_multi_stage_with_a_slim_final_python_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    final = stages[-1]
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", final.base), final.base
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    # The final stage takes only the built venv from an earlier stage.
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), copies
    earlier = {s.name for s in stages[:-1]}
    assert {c.split()[0].removeprefix("--from=") for c in copies} <= earlier


def test_no_build_tools_in_the_final_stage(stages: list[Stage]) -> None:
    for command in stages[-1].all("RUN"):
        words = set(shlex.split(command.replace("&&", " ")))
        assert not words & set(BUILD_TOOLS), command
        assert "pip" not in command, "the final stage must not install anything with pip"


def test_runs_as_the_non_root_user_the_pods_use(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "no USER in the final stage (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root UID (runAsNonRoot)"
    assert gid.isdigit() and int(gid) != 0
    # The same UID the chart's pods and the operator's StatefulSet pods run as.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    node_pod = pod_template(Owner("kv", "ns", "u"), parse_spec({}))["spec"]
    assert int(uid) == node_pod["securityContext"]["runAsUser"]
    assert int(gid) == node_pod["securityContext"]["runAsGroup"]
    # The data directory exists and belongs to that user (a fresh volume is mounted over it).
    runs = " ".join(stages[-1].all("RUN"))
    assert f"chown {uid}:{gid} /data" in runs


def test_commands_are_console_scripts_that_exist(stages: list[Stage]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    final = stages[-1]
    cmd = json.loads(final.all("CMD")[-1])  # exec form, so signals reach the process
    assert cmd == ["konsul"]
    assert not final.all("ENTRYPOINT"), "an ENTRYPOINT would swallow `konsul-operator` args"
    # The operator runs the same image: the chart's Deployment names its command.
    chart_deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "command: [konsul-operator]" in chart_deployment
    for name in ("konsul", "konsul-operator"):
        module, _, function = scripts[name].partition(":")
        assert callable(getattr(importlib.import_module(module), function)), scripts[name]
    # The build stage proves the operator entry point runs once installed.
    assert "konsul-operator --help" in " ".join(stages[0].all("RUN"))


def test_env_and_ports_match_the_node(stages: list[Stage]) -> None:
    env = " ".join(stages[-1].all("ENV"))
    assert "KONSUL_DATA_DIR=/data" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert stages[-1].all("EXPOSE") == ["8500 7000"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", ""))
               for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_what_copy_needs_and_nothing_else(stages: list[Stage]) -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for copy in stages[0].all("COPY"):
        sources += copy.split()[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "data/x",
                  "bench/results/x", "konsul/__pycache__/x.pyc", "charts/konsul/Chart.yaml"):
        assert _ignored(heavy, patterns), f"{heavy} would be sent to the build"


def _package_data_globs() -> dict[str, list[str]]:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs: dict[str, list[str]] = tool.get("package-data", {})
    return globs


def test_package_data_ships_every_data_file() -> None:
    """`pip install .` (what the image does) copies only .py files unless package-data names
    the others: every non-Python file the packages hold must be covered."""
    dirs = {"konsul": REPO / "konsul", "konsul_operator": REPO / "operator"}
    globs = _package_data_globs()
    missing = []
    for package, root in dirs.items():
        for path in root.rglob("*"):
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            rel = str(path.relative_to(root))
            if not any(fnmatch.fnmatch(rel, g) for g in globs.get(package, [])):
                missing.append(f"{package}/{rel}")
    assert not missing, missing


def test_every_package_is_installed() -> None:
    """`packages` is an explicit list: a subpackage missing from it is left out of the image
    (`import konsul.acl` failed in every pod while the tests, run from the source tree, passed)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    dirs = {"konsul": REPO / "konsul", "konsul_operator": REPO / "operator"}
    found = {
        ".".join((package, *init.parent.relative_to(root).parts))
        for package, root in dirs.items() for init in root.rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)


def test_dockerignore_matcher_itself() -> None:
    assert _ignored("a/b", ["*"]) and not _ignored("a/b", ["*", "!a/"])
    assert _ignored("a/__pycache__/x", ["*", "!a/", "**/__pycache__"])
    assert not _ignored(str(Path("pyproject.toml")), ["*", "!pyproject.toml"])


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = REPO / ".venv" / "bin" / "hadolint"
    assert binary.exists(), "hadolint is missing: run scripts/install-helm.sh (make test does)"
    return subprocess.run([str(binary), "--no-color", "--failure-threshold", "info",
                           str(dockerfile)], capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_root_final_user(tmp_path: Path) -> None:
    """The linter is wired to fail: the same file ending as root is refused (DL3002)."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    result = _hadolint(broken)
    assert result.returncode != 0 and "DL3002" in result.stdout, result.stdout
