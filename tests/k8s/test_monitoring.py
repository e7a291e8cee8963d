"""The chart's alert rules (promtool check and unit tests) and its Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.k8s.monitoring import (
    ALERT_TESTS,
    DASHBOARD,
    MONITORING_VALUES,
    OPERATIONS,
    alerts,
    dashboard,
    dashboard_exprs,
    metric_labels,
    metric_names,
    monitoring_spec,
    panels,
    prometheus_rule,
    promtool,
    rules,
)
from tests.k8s.render import (
    CHART,
    NAMESPACE,
    RELEASE,
    HelmFailed,
    component_name,
    helm,
    load_values,
    merge,
    render,
    render_ci,
)

ALERT_NAMES = {
    "ChannelBridgeNotReady",
    "ChannelBridgeTargetDown",
    "ChannelBridgeAbsent",
    "ChannelBridgeWebhookErrors",
    "ChannelBridgeCommandsLag",
    "ChannelBridgeCommandsStuck",
    "ChannelBridgeDeadLetters",
    "ChannelBridgeBirdUnavailable",
    "ChannelBridgeReconcileStale",
    "ChannelBridgeLedgerSnapshotsBehind",
}
COMMANDS_ALERTS = {
    "ChannelBridgeCommandsLag",
    "ChannelBridgeCommandsStuck",
    "ChannelBridgeDeadLetters",
    "ChannelBridgeBirdUnavailable",
    "ChannelBridgeReconcileStale",
    "ChannelBridgeLedgerSnapshotsBehind",
}
RUNBOOK_BASE = "https://git.example.com/channel-bridge/blob/v0.1.0/docs/operations.md"


def monitoring_values(**override: Any) -> dict[str, Any]:
    return merge(load_values(MONITORING_VALUES), override)


def rendered_alerts(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return alerts(prometheus_rule(render(values))["spec"])


def write_rules(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# --- metric names in PromQL (pure) -------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('bridge_ready{namespace="a", service=~"b-(x|y)"} == 0', {"bridge_ready"}),
        ('absent(up{namespace="a"} == 1)', {"up"}),
        (
            'sum by (namespace, code) (rate(a_total{code=~"5.."}[5m]))'
            " / ignoring (code) group_left sum by (namespace) (rate(a_total[5m])) > 0.05",
            {"a_total"},
        ),
        (
            "sum by (reason) ((x_total unless x_total offset 15m) or increase(x_total[15m])) > 0",
            {"x_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le, topic) "
            '(rate(h_bucket{topic=~".*events", job=~"$job"}[$__rate_interval])))',
            {"h_bucket"},
        ),
        ('time() - max by (workspace) (max_over_time(g{w="1"}[3600s])) > 1800', {"g"}),
        ("count by (client) (c == 0) and on (client) d", {"c", "d"}),
    ],
)
def test_metric_names_are_the_selected_series(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    ("expr", "pairs"),
    [
        (
            'sum by (namespace, code) (rate(a_total{namespace="n", code=~"5.."}[5m]))',
            {("a_total", "code")},
        ),
        (
            'histogram_quantile(0.99, sum by (le, action) (rate(h_bucket{job=~"$job"}[5m])))',
            {("h_bucket", "le"), ("h_bucket", "action")},
        ),
        # Two metrics: a `by` label cannot be told apart, matchers still can.
        ('sum by (x) (a{y="1"}) / sum by (x) (b)', {("a", "y")}),
        ('c{w="a,b", v!="z"}', {("c", "w"), ("c", "v")}),
    ],
)
def test_metric_labels_are_the_matchers_and_grouping(
    expr: str, pairs: set[tuple[str, str]]
) -> None:
    assert metric_labels(expr) == pairs


# --- the PrometheusRule ------------------------------------------------------------------


def test_rules_and_dashboard_are_off_by_default() -> None:
    rendered = render_ci("default-values.yaml")
    assert rendered.of_kind("PrometheusRule") == []
    assert [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")] == [
        f"{RELEASE}-channel-bridge"
    ]


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules_file = write_rules(tmp_path, monitoring_spec())
    result = run([promtool(), "check", "rules", str(rules_file)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in result.stdout


def test_rules_pass_the_promtool_unit_tests(tmp_path: Path) -> None:
    write_rules(tmp_path, monitoring_spec())
    test_files = sorted(ALERT_TESTS.glob("*.yaml"))
    assert test_files
    for test_file in test_files:
        shutil.copy(test_file, tmp_path / test_file.name)
    result = run([promtool(), "test", "rules", *(p.name for p in test_files)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "alert"),
    [
        (
            {"metrics": {"prometheusRule": {"alerts": {"commandsLag": {"threshold": 500}}}}},
            "ChannelBridgeCommandsLag",
        ),
        (
            {
                "metrics": {
                    "prometheusRule": {
                        "alerts": {"ledgerSnapshotsBehind": {"recordsAbove": 250000}}
                    }
                }
            },
            "ChannelBridgeLedgerSnapshotsBehind",
        ),
        # The default threshold follows the snapshot interval: five of them.
        (
            {"config": {"commands": {"ledgerSnapshotRecords": 200000}}},
            "ChannelBridgeLedgerSnapshotsBehind",
        ),
    ],
)
def test_promtool_unit_tests_fail_on_a_wrong_threshold(
    tmp_path: Path, override: dict[str, Any], alert: str
) -> None:
    """The unit tests see the rendered thresholds: change one and they fail."""
    write_rules(tmp_path, prometheus_rule(render(monitoring_values(**override)))["spec"])
    for test_file in ALERT_TESTS.glob("*.yaml"):
        shutil.copy(test_file, tmp_path / test_file.name)
    result = run([promtool(), "test", "rules", "channel-bridge.test.yaml"], tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in ALERT_TESTS.glob("*.yaml"):
        suite = yaml.safe_load(test_file.read_text(encoding="utf-8"))
        assert suite["rule_files"] == ["rules.yaml"]
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert set(alerts(monitoring_spec())) == ALERT_NAMES
    assert firing == ALERT_NAMES
    assert quiet == ALERT_NAMES


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for line in markdown.splitlines():
        if match := re.match(r"^#{1,6}\s+(.+?)\s*$", line):
            text = re.sub(r"[^\w\- ]", "", match[1].strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_is_labelled_annotated_and_has_a_runbook_section() -> None:
    anchors = github_anchors(OPERATIONS.read_text(encoding="utf-8"))
    for name, rule in alerts(monitoring_spec()).items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        base, _, anchor = annotations["runbook_url"].partition("#")
        assert base == RUNBOOK_BASE, name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/operations.md has no section {name}"


def test_rules_select_the_release_series_by_default_or_the_given_selector() -> None:
    default = 'namespace="bridge", service=~"demo-channel-bridge-(ingest|commands)"'
    for name, rule in alerts(monitoring_spec()).items():
        assert default in rule["expr"], name
    custom = 'job="bridge", env="prod"'
    values = monitoring_values(metrics={"prometheusRule": {"selector": custom}})
    for name, rule in rendered_alerts(values).items():
        assert default not in rule["expr"], name
        assert custom in rule["expr"], name


def test_thresholds_durations_and_severities_come_from_values() -> None:
    values = monitoring_values(
        metrics={
            "prometheusRule": {
                "alerts": {
                    "notReady": {"for": "3m", "severity": "warning"},
                    "webhookErrors": {"threshold": 0.2, "window": "10m"},
                    "commandsLag": {"threshold": 50, "for": "1m"},
                    "commandsStuck": {"thresholdSeconds": 120},
                    "deadLetters": {"window": "1h"},
                    "birdUnavailable": {"threshold": 0.5},
                    "reconcileStale": {"staleAfterSeconds": 7200},
                    "ledgerSnapshotsBehind": {"for": "1h", "severity": "critical"},
                    "targetDown": {"enabled": False},
                }
            }
        }
    )
    got = rendered_alerts(values)
    assert "ChannelBridgeTargetDown" not in got
    assert (got["ChannelBridgeNotReady"]["for"], got["ChannelBridgeNotReady"]["labels"]) == (
        "3m",
        {"severity": "warning"},
    )
    assert got["ChannelBridgeWebhookErrors"]["expr"].endswith("> 0.2")
    assert "[10m]" in got["ChannelBridgeWebhookErrors"]["expr"]
    assert got["ChannelBridgeCommandsLag"]["expr"].endswith("> 50")
    assert got["ChannelBridgeCommandsLag"]["for"] == "1m"
    assert got["ChannelBridgeCommandsStuck"]["expr"].endswith("> 120")
    assert "offset 1h" in got["ChannelBridgeDeadLetters"]["expr"]
    assert got["ChannelBridgeBirdUnavailable"]["expr"].endswith("> 0.5")
    assert got["ChannelBridgeReconcileStale"]["expr"].endswith("> 7200")
    assert (
        got["ChannelBridgeLedgerSnapshotsBehind"]["for"],
        got["ChannelBridgeLedgerSnapshotsBehind"]["labels"],
    ) == ("1h", {"severity": "critical"})


def test_ledger_snapshots_alert_follows_the_snapshot_interval() -> None:
    """Five snapshot intervals by default, `recordsAbove` instead when set; no alert when
    snapshots are off."""
    default = monitoring_spec()
    assert alerts(default)["ChannelBridgeLedgerSnapshotsBehind"]["expr"].endswith("> 500000")
    # Whole numbers however large (not 1.25e+07).
    every = monitoring_values(config={"commands": {"ledgerSnapshotRecords": 2500000}})
    rule = rendered_alerts(every)["ChannelBridgeLedgerSnapshotsBehind"]
    assert rule["expr"].endswith("> 12500000")
    assert "more than 12500000 ledger records" in rule["annotations"]["description"]
    assert "a snapshot is due every 2500000" in rule["annotations"]["description"]
    above = merge(
        every,
        {
            "metrics": {
                "prometheusRule": {"alerts": {"ledgerSnapshotsBehind": {"recordsAbove": 3000000}}}
            }
        },
    )
    rule = rendered_alerts(above)["ChannelBridgeLedgerSnapshotsBehind"]
    assert rule["expr"].endswith("> 3000000")
    assert "more than 3000000 ledger records" in rule["annotations"]["description"]
    off = monitoring_values(config={"commands": {"ledgerSnapshotRecords": 0}})
    assert set(rendered_alerts(off)) == ALERT_NAMES - {"ChannelBridgeLedgerSnapshotsBehind"}
    off_with_threshold = merge(
        off,
        {
            "metrics": {
                "prometheusRule": {"alerts": {"ledgerSnapshotsBehind": {"recordsAbove": 1000}}}
            }
        },
    )
    assert "ChannelBridgeLedgerSnapshotsBehind" not in rendered_alerts(off_with_threshold)


def test_alerts_follow_the_roles_and_reconciliation() -> None:
    without_reconcile = monitoring_values(config={"commands": {"reconcileIntervalSeconds": 0}})
    assert set(rendered_alerts(without_reconcile)) == ALERT_NAMES - {"ChannelBridgeReconcileStale"}
    ingest_only = monitoring_values(commands={"enabled": False})
    assert set(rendered_alerts(ingest_only)) == ALERT_NAMES - COMMANDS_ALERTS
    commands_only = monitoring_values(ingest={"enabled": False})
    assert set(rendered_alerts(commands_only)) == ALERT_NAMES - {"ChannelBridgeWebhookErrors"}
    # Commands only and scaled to zero when idle: no target up is normal.
    scaled_to_zero = merge(
        commands_only,
        {"commands": {"autoscaling": {"keda": {"enabled": True, "minReplicaCount": 0}}}},
    )
    assert set(rendered_alerts(scaled_to_zero)) == ALERT_NAMES - {
        "ChannelBridgeWebhookErrors",
        "ChannelBridgeAbsent",
    }
    with_ingest = monitoring_values(
        commands={"autoscaling": {"keda": {"enabled": True, "minReplicaCount": 0}}}
    )
    assert "ChannelBridgeAbsent" in rendered_alerts(with_ingest)


def test_additional_rules_join_the_group() -> None:
    extra = {"record": "channel_bridge:webhook_requests:rate5m", "expr": "sum(rate(x[5m]))"}
    values = monitoring_values(metrics={"prometheusRule": {"additionalRules": [extra]}})
    rule = prometheus_rule(render(values))
    assert list(rules(rule["spec"]))[-1] == extra
    assert len(rule["spec"]["groups"]) == 1


def test_rule_object_carries_its_labels_and_namespace() -> None:
    rule = prometheus_rule(render_ci(MONITORING_VALUES))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == NAMESPACE
    values = monitoring_values(metrics={"prometheusRule": {"namespace": "monitoring"}})
    assert prometheus_rule(render(values))["metadata"]["namespace"] == "monitoring"


def test_rules_need_the_runbook_base_url() -> None:
    values = monitoring_values(metrics={"prometheusRule": {"runbookBaseUrl": ""}})
    with pytest.raises(HelmFailed, match=r"metrics\.prometheusRule\.runbookBaseUrl is required"):
        render(values)


# --- the dashboard -----------------------------------------------------------------------


def dashboard_configmap(values: dict[str, Any]) -> dict[str, Any]:
    name = component_name("dashboard")
    return render(values).named("ConfigMap", name)


def test_dashboard_configmap_carries_the_file_and_the_sidecar_label() -> None:
    configmap = render_ci(MONITORING_VALUES).named("ConfigMap", component_name("dashboard"))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "Messaging"
    (key,) = configmap["data"]
    assert key.endswith(".json")
    assert json.loads(configmap["data"][key]) == dashboard()
    custom = dashboard_configmap(
        monitoring_values(
            metrics={
                "dashboard": {
                    "labelKey": "dashboards",
                    "labelValue": "grafana",
                    "namespace": "o11y",
                }
            }
        )
    )
    assert custom["metadata"]["labels"]["dashboards"] == "grafana"
    assert "grafana_dashboard" not in custom["metadata"]["labels"]
    assert custom["metadata"]["namespace"] == "o11y"


def test_dashboard_file_is_in_the_packaged_chart(tmp_path: Path) -> None:
    helm("package", CHART, "--destination", tmp_path)
    (archive,) = tmp_path.glob("*.tgz")
    with tarfile.open(archive) as packaged:
        member = packaged.extractfile("channel-bridge/dashboards/channel-bridge.json")
        assert member is not None
        assert json.loads(member.read()) == dashboard()


def test_dashboard_is_valid_json_with_its_variables() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job"} <= set(variables)
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
            assert 'job=~"$job"' in target["expr"], panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard()):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_ingest_commands_bird_and_kafka() -> None:
    used: set[str] = set()
    for expr in dashboard_exprs(dashboard()):
        used |= metric_names(expr)
    expected = {
        "bridge_ready",
        "bridge_webhook_requests_total",
        "bridge_webhook_responses_total",
        "bridge_webhook_event_age_seconds_bucket",
        "bridge_publish_seconds_bucket",
        "bridge_commands_consumer_lag",
        "bridge_commands_oldest_unfinished_age_seconds",
        "bridge_command_duration_seconds_bucket",
        "bridge_commands_in_flight",
        "bridge_commands_total",
        "bridge_bird_request_seconds_count",
        "bridge_bird_retries_total",
        "bridge_create_follow_seconds_bucket",
        "bridge_kafka_connected",
        "bridge_publish_failures_total",
        "bridge_dead_letters_total",
        "bridge_ledger_entries",
        "bridge_reconcile_last_success_timestamp_seconds",
    }
    assert expected <= used
