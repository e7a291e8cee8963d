"""The chart's alert rules and Grafana dashboard as data, the metric names they use, promtool.

Pure apart from reading the dashboard file and finding (or installing) promtool.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.render import CHART, ROOT, Rendered, render_ci

DASHBOARD = CHART / "dashboards" / "channel-bridge.json"
ALERT_TESTS = Path(__file__).parent / "alerts"
OPERATIONS = ROOT / "docs" / "operations.md"
# The ci/ values set with every alert and the dashboard rendered (reconciliation on).
MONITORING_VALUES = "monitoring-values.yaml"
# Series Prometheus itself makes for every target, not the bridge.
PROMETHEUS_SERIES = frozenset({"up"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "offset",
    }
)


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (functions and labels left out)."""
    text = _STRING.sub(" ", expr)
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    while _BRACES.search(text):
        text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    return {
        match[1]
        for match in _IDENTIFIER.finditer(text)
        if match[2] is None and match[1].lower() not in _KEYWORDS
    }


def prometheus_rule(rendered: Rendered) -> dict[str, Any]:
    (rule,) = rendered.of_kind("PrometheusRule")
    return rule


def rules(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in spec["groups"]:
        yield from group["rules"]


def alerts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alerting rules of a PrometheusRule spec, by alert name."""
    return {rule["alert"]: rule for rule in rules(spec) if "alert" in rule}


@functools.cache
def monitoring_spec() -> dict[str, Any]:
    """The spec of the PrometheusRule the chart renders with every alert on."""
    spec: dict[str, Any] = prometheus_rule(render_ci(MONITORING_VALUES))["spec"]
    return spec


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict[str, Any]) -> Iterator[str]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield _label_values_selector(variable["definition"])


def _label_values_selector(definition: str) -> str:
    """`label_values(metric{...}, label)` -> `metric{...}`."""
    match = re.fullmatch(r"label_values\((.*),\s*\w+\)", definition)
    assert match, definition
    return match[1]


def used_metric_names(exprs: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for expr in exprs:
        names |= metric_names(expr)
    return names


def exposed_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """Sample names a /metrics page can give Prometheus, from its (family name, type) pairs."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    return {name + suffix for name, kind in families for suffix in suffixes.get(kind, ("",))}


# --- promtool ------------------------------------------------------------------------------


def _promtool_path() -> str | None:
    return shutil.which("promtool")


@functools.cache
def _promtool_problem() -> tuple[bool, str] | None:
    """None once promtool is on PATH, else (can skip, why not).

    Like helm: `make prometheus-tools` installs Debian's prometheus package (which ships
    promtool). A machine that cannot install packages (not root, no apt-get) skips; one
    that could and did not get promtool fails.
    """
    if _promtool_path() is not None:
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return (
            True,
            "promtool not on PATH and no apt-get as root to install it (`make prometheus-tools`)",
        )
    result = subprocess.run(
        ["make", "--no-print-directory", "prometheus-tools"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if _promtool_path() is None:
        output = f"{result.stdout}{result.stderr}".strip()
        return False, f"make prometheus-tools did not install promtool:\n{output}"
    return None


def promtool() -> str:
    """Path of promtool; skips the calling test when it cannot be had on this machine."""
    problem = _promtool_problem()
    if problem is not None:
        can_skip, why = problem
        if can_skip:
            pytest.skip(why)
        pytest.fail(why, pytrace=False)
    path = _promtool_path()
    assert path is not None
    return path


# Labels Prometheus puts on every series of a target (ServiceMonitor), not the bridge.
TARGET_LABELS = frozenset(
    {"namespace", "service", "job", "pod", "instance", "container", "endpoint"}
)
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^()]*)\)", re.IGNORECASE)


def metric_labels(expr: str) -> set[tuple[str, str]]:
    """(metric, label) pairs an expression relies on: its matchers, and its `by` labels
    when it selects one metric only. Target labels are left out."""
    pairs: set[tuple[str, str]] = set()
    for match in _SELECTOR.finditer(_STRING.sub('""', expr)):
        pairs |= {(match[1], label) for label in _MATCHER.findall(match[2])}
    names = metric_names(expr)
    if len(names) == 1:
        (name,) = names
        for grouping in _GROUPING.findall(expr):
            pairs |= {(name, label.strip()) for label in grouping.split(",") if label.strip()}
    return {(name, label) for name, label in pairs if label not in TARGET_LABELS}
