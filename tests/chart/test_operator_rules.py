"""The chart's alerts on the operator itself: promtool checks and fires them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.chart.helm import CHART

RULES = CHART / "files" / "operator-rules.yaml"
TESTS = Path(__file__).with_name("operator-rules.test.yaml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run scripts/install-helm.sh (apt package prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          cwd=TESTS.parent)


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_and_stays_quiet(tmp_path: Path) -> None:
    result = promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = yaml.safe_load(TESTS.read_text())
    fired = {a["alertname"] for t in tested["tests"] for a in t.get("alert_rule_test", [])
             if a.get("exp_alerts")}
    assert fired == alerts
