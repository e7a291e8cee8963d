"""mypy's configuration: no import override for a package that ships its own type hints."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_no_missing_imports_override_for_a_typed_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    overridden = [
        pattern.removesuffix(".*")
        for override in config["tool"]["mypy"].get("overrides", [])
        if override.get("ignore_missing_imports")
        for pattern in override["module"]
    ]
    typed = []
    for module in overridden:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            package = Path(next(iter(spec.submodule_search_locations)))
            if (package / "py.typed").exists():
                typed.append(module)
    assert typed == [], f"these ship py.typed; drop their mypy override: {typed}"
