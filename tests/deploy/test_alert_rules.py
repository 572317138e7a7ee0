"""deploy/prometheus: the alerting rules load, fire on the series they should (promtool's
own unit tests), use only metrics Stovepipe exports, and each has its runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import stovepipe.telemetry.metrics  # noqa: F401 - registers the families

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
RUNBOOKS = ROOT / "doc" / "operations.md"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install it with `apt-get install prometheus`"
    return found


def _rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested_alerts == {str(rule["alert"]) for rule in _rules()}


def test_every_metric_in_a_rule_is_one_stovepipe_exports() -> None:
    exported = {
        sample_name
        for family in REGISTRY.collect()
        if family.name.startswith("stovepipe_")
        for sample_name in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_count",
            f"{family.name}_sum",
            f"{family.name}_bucket",
        )
    }
    used = set(re.findall(r"stovepipe_[a-z_]+", RULES.read_text()))
    assert used, "no metric in the rules"
    assert used <= exported, sorted(used - exported)


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        line.removeprefix("### ").strip().lower()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("### ")
    }
    for rule in _rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        anchor = str(annotations["runbook_url"]).split("#", 1)[1]
        assert anchor == str(rule["alert"]).lower()
        assert anchor in headings, f"{rule['alert']} has no runbook in doc/operations.md"
