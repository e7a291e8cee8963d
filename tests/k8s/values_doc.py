"""The chart README's parameter table, generated from the `## @param` lines of values.yaml.

Pure apart from reading/writing the two files. Regenerate after changing values.yaml:
    .venv/bin/python -m tests.k8s.values_doc --write
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped]

from tests.k8s.render import CHART

VALUES = CHART / "values.yaml"
README = CHART / "README.md"
START = (
    "<!-- parameters:start (generated from values.yaml: python -m tests.k8s.values_doc --write) -->"
)
END = "<!-- parameters:end -->"

_PARAM = re.compile(r"^\s*## @param (?P<key>[\w.-]+) (?P<text>.+)$")
_SECTION = re.compile(r"^\s*## @section (?P<title>.+)$")


@dataclass(frozen=True)
class Param:
    key: str
    description: str
    section: str


def read_params(text: str) -> list[Param]:
    params: list[Param] = []
    section = ""
    for line in text.splitlines():
        if match := _SECTION.match(line):
            section = match["title"].strip()
        elif match := _PARAM.match(line):
            params.append(Param(match["key"], match["text"].strip(), section))
    return params


def leaf_keys(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf: scalars, lists and empty maps."""
    if isinstance(values, dict) and values:
        keys: list[str] = []
        for name, child in values.items():
            keys.extend(leaf_keys(child, f"{prefix}{name}."))
        return keys
    return [prefix.rstrip(".")]


def lookup(values: Any, key: str) -> Any:
    node = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def undocumented(values: Any, params: list[Param]) -> list[str]:
    """Leaves of values.yaml not covered by a @param (on the key itself or an ancestor)."""
    documented = {param.key for param in params}

    def covered(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1))

    return [key for key in leaf_keys(values) if not covered(key)]


def unknown(values: Any, params: list[Param]) -> list[str]:
    """@param keys that do not exist in values.yaml."""
    missing = []
    for param in params:
        try:
            lookup(values, param.key)
        except KeyError:
            missing.append(param.key)
    return missing


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(values: Any, params: list[Param]) -> str:
    lines: list[str] = []
    section = None
    for param in params:
        if param.section != section:
            section = param.section
            lines += [
                "",
                f"### {section}",
                "",
                "| Name | Description | Default |",
                "| --- | --- | --- |",
            ]
        default = json.dumps(lookup(values, param.key), separators=(",", ":"))
        lines.append(f"| `{param.key}` | {_cell(param.description)} | `{_cell(default)}` |")
    return "\n".join(lines).strip() + "\n"


def generated_readme() -> str:
    text = VALUES.read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    readme = README.read_text(encoding="utf-8")
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n\n{table(values, read_params(text))}\n{END}{tail}"


def main(argv: list[str]) -> int:
    fresh = generated_readme()
    if "--write" in argv:
        README.write_text(fresh, encoding="utf-8")
        return 0
    if README.read_text(encoding="utf-8") != fresh:
        print("helm/channel-bridge/README.md is stale: run python -m tests.k8s.values_doc --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
