"""The chart rendered by the real helm binary (no cluster), and the paths of the checked tools.

helm is the release pinned in the Makefile (`HELM_VERSION`), built from source by `make helm`
into .cache/bin. When it is missing it is built on first use; without a Go toolchain to build
it, the tests that need it skip.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "channel-bridge"
CI_DIR = CHART / "ci"
CI_VALUES = sorted(path.name for path in CI_DIR.glob("*.yaml"))
DOCKERFILE = ROOT / "Dockerfile"

RELEASE = "demo"
NAMESPACE = "bridge"
# The Kubernetes version objects are rendered for and validated against (schemas ship with
# kubernetes-validate).
KUBE_VERSION = "1.33"

HELM = ROOT / ".cache" / "bin" / "helm"
# A longer build than this is a hung toolchain, not a slow machine (cold: about 3 minutes).
HELM_BUILD_TIMEOUT_S = 1800

Manifest = dict[str, Any]


def pinned_helm_version() -> str:
    """`HELM_VERSION` from the Makefile: the one place the release is pinned."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^HELM_VERSION\s*:?=\s*(v\S+)\s*$", makefile, re.MULTILINE)
    assert match, "the Makefile pins no HELM_VERSION"
    return match[1]


HELM_VERSION = pinned_helm_version()


class HelmFailed(Exception):
    """helm exited non-zero; the message is helm's own output."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.stdout = result.stdout
        self.stderr = result.stderr
        command = " ".join(argv)
        super().__init__(
            f"`{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}".rstrip()
        )


def installed_helm_version() -> str | None:
    if not HELM.exists():
        return None
    result = subprocess.run(
        [str(HELM), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


@functools.cache
def _helm_problem() -> tuple[bool, str] | None:
    """None once .cache/bin/helm is the pinned release, else (can skip, why not).

    Cached, failure included, so a broken build is tried once per session, not per test.
    """
    if installed_helm_version() == HELM_VERSION:
        return None
    if shutil.which("go") is None:
        return True, f"helm {HELM_VERSION} not built and no Go on PATH to build it (`make helm`)"
    result = subprocess.run(
        ["make", "--no-print-directory", "helm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HELM_BUILD_TIMEOUT_S,
        check=False,
    )
    built = installed_helm_version()
    if result.returncode != 0 or built != HELM_VERSION:
        output = f"{result.stdout}{result.stderr}".strip()
        return False, f"make helm did not build helm {HELM_VERSION} (got {built}):\n{output}"
    return None


def helm_binary() -> Path:
    """The pinned helm; skips the calling test when it is absent and there is no Go to build it."""
    problem = _helm_problem()
    if problem is not None:
        can_skip, why = problem
        if can_skip:
            pytest.skip(why)
        pytest.fail(why, pytrace=False)
    return HELM


def helm(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm; raise ``HelmFailed`` with its output when it exits non-zero."""
    argv = [str(helm_binary()), *map(str, args)]
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise HelmFailed(argv, result)
    return result


@dataclass(frozen=True)
class Rendered:
    """The output of one `helm template`: a multi-document YAML stream."""

    manifest: str
    warnings: str  # helm's stderr on success (e.g. values it could not coalesce)

    @functools.cached_property
    def docs(self) -> list[Manifest]:
        return [doc for doc in yaml.safe_load_all(self.manifest) if doc]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest:
        matches = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
        return matches[0]

    def text(self) -> str:
        """All objects as one multi-document YAML stream, with their source templates."""
        return self.manifest


def load_values(name: str) -> dict[str, Any]:
    """A values set from the chart's ci/ directory."""
    data = yaml.safe_load((CI_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two values mappings (override wins), like repeated `-f` files."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def template(values_file: Path, *args: str, chart: Path = CHART) -> Rendered:
    """`helm template` of ``chart`` with one values file (schema-checked, then rendered).

    Raises ``HelmFailed`` for schema violations and `required`/`fail` refusals alike; the
    message says which.
    """
    result = helm(
        "template",
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        f"{KUBE_VERSION}.0",
        "--values",
        values_file,
        *args,
    )
    return Rendered(manifest=result.stdout, warnings=result.stderr)


def render(values: Mapping[str, Any], *args: str) -> Rendered:
    """`helm template` with ``values`` (written to a file, as a user would pass them)."""
    with tempfile.TemporaryDirectory(prefix="values-") as directory:
        values_file = Path(directory) / "values.json"  # JSON is YAML
        values_file.write_text(json.dumps(values), encoding="utf-8")
        return template(values_file, *args)


@functools.cache
def render_ci(name: str) -> Rendered:
    """`helm template` with a ci/ values file, once per test session."""
    return template(CI_DIR / name)


# NOTES.txt is rendered only by `helm install` / `upgrade`, which need a cluster even with
# --dry-run=client. A copy of the chart renders the same text through `tpl` into a ConfigMap.
_NOTES_PROBE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ tpl (.Files.Get "NOTES.probe") . | toJson }}
"""


def render_notes(values: Mapping[str, Any]) -> str:
    """The text `helm install` prints after installing with ``values``."""
    with tempfile.TemporaryDirectory(prefix="notes-") as directory:
        chart = Path(directory) / CHART.name
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci"))
        shutil.copy(chart / "templates" / "NOTES.txt", chart / "NOTES.probe")
        (chart / "templates" / "notes-probe.yaml").write_text(_NOTES_PROBE, encoding="utf-8")
        values_file = Path(directory) / "values.json"
        values_file.write_text(json.dumps(values), encoding="utf-8")
        rendered = template(values_file, "--show-only", "templates/notes-probe.yaml", chart=chart)
    (probe,) = rendered.docs
    notes: str = probe["data"]["notes"]
    return notes


def containers(deployment: Manifest) -> Iterator[Manifest]:
    yield from deployment["spec"]["template"]["spec"]["containers"]


def component_name(component: str) -> str:
    return f"{RELEASE}-channel-bridge-{component}"


def tool(name: str) -> str:
    """Path of a tool installed by the project's pip packages: the venv's bin dir first."""
    bin_dir = Path(sys.executable).parent
    path = shutil.which(name, path=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    if path is None:
        raise FileNotFoundError(f"{name} not found; install the project's k8s extra")
    return path
