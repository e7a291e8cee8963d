"""Offline chart rendering (helm-python-sdk, no cluster) and the paths of the checked tools.

Rendering is pure apart from reading the chart; the tool lookups only inspect PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "channel-bridge"
CI_DIR = CHART / "ci"
CI_VALUES = sorted(path.name for path in CI_DIR.glob("*.yaml"))
DOCKERFILE = ROOT / "Dockerfile"

RELEASE = "demo"
NAMESPACE = "bridge"
# The Kubernetes version objects are validated against (schemas ship with kubernetes-validate).
KUBE_VERSION = "1.33"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """The output of one render: template path -> text (NOTES.txt apart)."""

    templates: Mapping[str, str]
    notes: str

    @functools.cached_property
    def docs(self) -> list[Manifest]:
        found: list[Manifest] = []
        for text in self.templates.values():
            found.extend(doc for doc in yaml.safe_load_all(text) if doc)
        return found

    def of_kind(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest:
        matches = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
        return matches[0]

    def text(self) -> str:
        """All objects as one multi-document YAML stream, with their source templates."""
        parts = [
            f"# Source: {path}\n{body.strip()}\n"
            for path, body in sorted(self.templates.items())
            if body.strip()
        ]
        return "---\n" + "---\n".join(parts)


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


def render(values: Mapping[str, Any]) -> Rendered:
    """Validate ``values`` against values.schema.json and render every template.

    Raises ``helm.HelmValuesError`` for schema violations and ``helm.HelmRenderError``
    for `required`/`fail` refusals.
    """
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(dict(values))
        out = chart.render(dict(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    notes = "".join(text for path, text in out.items() if path.endswith("NOTES.txt"))
    templates = {
        path: text for path, text in out.items() if not path.endswith("NOTES.txt") and text.strip()
    }
    return Rendered(templates=templates, notes=notes)


@functools.cache
def render_ci(name: str) -> Rendered:
    """Render a ci/ values set once per test session."""
    return render(load_values(name))


def lint(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`helm lint --strict` findings of warning level and above (1 = info is dropped)."""
    report = helm.lint(str(CHART), dict(values), strict=True, kube_version=f"v{KUBE_VERSION}.0")
    return [message for message in report["messages"] if message["severity"] >= 2]


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
