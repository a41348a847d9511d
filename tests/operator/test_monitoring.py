"""operator/deploy/monitoring: alerts tested by promtool on synthetic series, a dashboard naming only real metrics.

promtool comes from Debian's ``prometheus`` package (``.ci/install.sh``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from metallb.operator.exposition import RUNTIME, render

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "operator" / "deploy" / "monitoring"
RULES = MONITORING / "alerts.rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
DOC = ROOT / "docs" / "metrics.md"
#: MetalLB's chart's alerts, then ours (issue 16).
CHART_ALERTS = {
    "MetalLBStaleConfig",
    "MetalLBConfigNotLoaded",
    "MetalLBAddressPoolExhausted",
    "MetalLBAddressPoolUsage75Percent",
    "MetalLBAddressPoolUsage85Percent",
    "MetalLBAddressPoolUsage95Percent",
    "MetalLBBGPSessionDown",
}
OUR_ALERTS = {
    "MetalLBAddressServiceUnreachable",
    "MetalLBAddressServiceDown",
    "MetalLBLeasesLost",
    "MetalLBAddressConflict",
    "MetalLBAllocationFailing",
}
#: Words of PromQL that look like metric names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: .ci/install.sh installs Debian's prometheus package"
    return subprocess.run([found, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", ())]


def exposed() -> set[str]:
    """Every metric name a scrape of ours can hold: the documented ones (a docs test ties them to the code)
    with a histogram's series, and the process-wide runtime families."""
    names = set(re.findall(r"^\| `(metallb_\w+)` \|", DOC.read_text(), flags=re.M))
    text = DOC.read_text()
    for name in list(names):
        if re.search(rf"^\| `{name}` \| histogram \|", text, re.M):
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names | set(re.findall(r"^# TYPE (\S+) ", render([RUNTIME]).decode(), re.M)) | {"up"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (identifiers that are neither functions, keywords nor labels)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    words = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]|le|Inf|NaN", w)}


class TestAlerts:
    def test_rules_are_valid(self):
        """``promtool check rules`` accepts the rules file."""
        result = promtool("check", "rules", RULES.name)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_promtool_unit_tests_pass(self):
        """Every alert fires on its synthetic series and stays silent where it must (``promtool test rules``)."""
        result = promtool("test", "rules", "alerts.test.yaml")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_chart_alerts_and_ours_each_tested(self):
        """The file has MetalLB's chart's alerts and ours, and the promtool tests look at every one."""
        names = {rule["alert"] for rule in rules()}
        assert names == CHART_ALERTS | OUR_ALERTS
        tests = yaml.safe_load((MONITORING / "alerts.test.yaml").read_text())["tests"]
        tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
        assert tested == names

    def test_prometheusrule_has_the_same_groups(self):
        """prometheusrule.yaml is the rules file's groups in a PrometheusRule."""
        rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
        assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
        assert rule["metadata"]["namespace"] == "metallb-system"
        assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]

    def test_alerts_name_only_exposed_metrics(self):
        """Every metric an alert reads is one some component exposes."""
        unknown = {name for rule in rules() for name in metric_names(rule["expr"])} - exposed()
        assert not unknown, f"alerts read metrics nobody exposes: {sorted(unknown)}"


class TestDashboard:
    def test_names_only_exposed_metrics(self):
        """Every query of the dashboard names metrics that exist (docs/metrics.md, tied to the code, or runtime)."""
        unknown = {name for expr in dashboard_exprs() for name in metric_names(expr)} - exposed()
        assert not unknown, f"the dashboard queries metrics nobody exposes: {sorted(unknown)}"

    def test_queries_parse(self, tmp_path):
        """Every query is valid PromQL: promtool checks them as recording rules."""
        exprs = [e.replace("$job", ".*") for e in dashboard_exprs()]
        records = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
        (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": records}]}))
        result = promtool("check", "rules", "queries.yaml", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_covers_each_area(self):
        """Pools, allocations, announcements per node, BGP sessions, ARP/NDP traffic and address-service latency."""
        used = {name for expr in dashboard_exprs() for name in metric_names(expr)}
        for needed in (
            "metallb_allocator_addresses_in_use_total",
            "metallb_allocator_allocation_failures_total",
            "metallb_speaker_announced",
            "metallb_bgp_session_up",
            "metallb_layer2_requests_received",
            "metallb_address_service_request_seconds_bucket",
        ):
            assert needed in used, needed

    def test_scanner_finds_names_not_functions_or_labels(self):
        """The name scanner keeps metrics and drops functions, keywords, label names and durations."""
        expr = 'histogram_quantile(0.99, sum by (le, path) (rate(a_bucket{x="b c"}[5m]))) / on(pool) b_total > 1'
        assert metric_names(expr) == {"a_bucket", "b_total"}
