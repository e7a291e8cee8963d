"""Linters and scanners from the project's pip packages: hadolint, yamllint, trivy config.

Each runs offline as a subprocess on the Dockerfile, the chart's YAML sources and the
manifests rendered from every ci/ values set.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.render import CHART, CI_VALUES, DOCKERFILE, ROOT, render_ci, tool

TRIVYIGNORE = ROOT / ".trivyignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
FAILING_SEVERITIES = {"HIGH", "CRITICAL"}

# Chart sources: yamllint's defaults, but `## @param` documentation lines run long and
# Helm values files do not start with `---`.
YAMLLINT_SOURCES = "{extends: default, rules: {document-start: disable, line-length: {max: 200}}}"
# Rendered manifests: toYaml does not indent sequences the way the templates do, and
# long values (checksums, python one-liners) are fine.
YAMLLINT_RENDERED = (
    "{extends: default, rules: {line-length: disable, document-start: disable,"
    " indentation: {spaces: 2, indent-sequences: whatever}}}"
)


def run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# --- hadolint ---------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    result = run(
        [tool("hadolint"), "--config", str(HADOLINT_CONFIG), "--format", "json", str(DOCKERFILE)]
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_ignores_have_reasons() -> None:
    lines = HADOLINT_CONFIG.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^\s*-\s*DL\d+|^\s*-\s*SC\d+", line):
            inline = "#" in line
            above = index > 0 and lines[index - 1].strip().startswith("#")
            assert inline or above, f".hadolint.yaml ignores {line.strip()} without a reason"


# --- yamllint ---------------------------------------------------------------------------


def test_chart_yaml_sources_are_yamllint_clean() -> None:
    sources = [CHART / "values.yaml", CHART / "Chart.yaml", *sorted((CHART / "ci").glob("*.yaml"))]
    result = run(
        [tool("yamllint"), "--strict", "-f", "parsable", "-d", YAMLLINT_SOURCES]
        + [str(path) for path in sources]
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every ci/ values set rendered to <set>.yaml, plus a copy of the Dockerfile."""
    directory = tmp_path_factory.mktemp("rendered")
    for name in CI_VALUES:
        (directory / name).write_text(render_ci(name).text(), encoding="utf-8")
    shutil.copy(DOCKERFILE, directory / "Dockerfile")
    return directory


def test_rendered_manifests_are_yamllint_clean(rendered_dir: Path) -> None:
    result = run(
        [tool("yamllint"), "--strict", "-f", "parsable", "-d", YAMLLINT_RENDERED]
        + [str(rendered_dir / name) for name in CI_VALUES]
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- trivy config -----------------------------------------------------------------------


def read_trivyignore() -> dict[str, str]:
    """Suppressed IDs -> the reason written in the comment block above each."""
    suppressed: dict[str, str] = {}
    comment: list[str] = []
    for raw in TRIVYIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comment.append(line.lstrip("# "))
        elif line:
            suppressed[line.split()[0]] = " ".join(comment)
            comment = []
        else:  # a blank line ends a comment block
            comment = []
    return suppressed


@pytest.fixture(scope="module")
def trivy_findings(rendered_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Misconfigurations of every rendered values set and the Dockerfile, unsuppressed.

    Runs outside the repository root so trivy does not apply .trivyignore itself: the
    tests apply it, and can tell a stale suppression.
    """
    report = tmp_path_factory.mktemp("trivy") / "report.json"
    result = run(
        [
            tool("trivy"),
            "config",
            "--skip-check-update",
            "--quiet",
            "--cache-dir",
            str(report.parent / "cache"),
            "--format",
            "json",
            "--output",
            str(report),
            str(rendered_dir),
        ],
        cwd=rendered_dir,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    scanned = {entry["Target"] for entry in data.get("Results", [])}
    assert {"Dockerfile", *CI_VALUES} <= scanned, f"trivy did not scan everything: {scanned}"
    return [
        {"target": entry["Target"], **finding}
        for entry in data.get("Results", [])
        for finding in entry.get("Misconfigurations") or []
    ]


def test_trivy_finds_no_high_or_critical_misconfiguration(trivy_findings: list[Any]) -> None:
    suppressed = read_trivyignore()
    failing = [
        f"{f['target']}: {f['ID']} {f['Severity']} {f['Title']}: {f['Message']}"
        for f in trivy_findings
        if f["Severity"] in FAILING_SEVERITIES and f["ID"] not in suppressed
    ]
    assert failing == []


def test_trivy_suppressions_have_reasons_and_are_still_needed(trivy_findings: list[Any]) -> None:
    suppressed = read_trivyignore()
    found = {f["ID"] for f in trivy_findings}
    for finding_id, reason in suppressed.items():
        assert len(reason) > 40, f"{finding_id} is suppressed without a written reason"
        assert finding_id in found, f"{finding_id} no longer occurs: drop it from .trivyignore"


def test_trivy_passes_the_dockerfile(trivy_findings: list[Any]) -> None:
    assert [f["ID"] for f in trivy_findings if f["target"] == "Dockerfile"] == []
