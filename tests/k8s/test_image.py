"""The image's inputs: hashed lock files against pyproject.toml, the Dockerfile's contract.

Pure file checks (no build); the real build and run is scripts/image-smoke.sh.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.k8s.render import DOCKERFILE, ROOT

RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s\\;]+)")


def read_lock(path: Path) -> dict[str, tuple[Version, int]]:
    """Package -> (pinned version, number of --hash options) of a pip-compile lock."""
    pins: dict[str, tuple[Version, int]] = {}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match["name"])
            pins[current] = (Version(match["version"]), 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_every_pin_is_exact_and_hashed() -> None:
    for lock in (RUNTIME_LOCK, BUILD_LOCK):
        pins = read_lock(lock)
        assert pins, f"{lock.name} pins nothing"
        for name, (_, hashes) in pins.items():
            assert hashes >= 1, f"{lock.name}: {name} has no --hash"


def test_runtime_lock_satisfies_the_project_dependencies() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    pins = read_lock(RUNTIME_LOCK)
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} (pyproject.toml) is missing from requirements/runtime.txt"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/runtime.txt pins {name}=={version}, pyproject.toml wants {spec}"
        )
    assert "dumb-init" in pins, "the image's PID 1 comes from the lock"


def test_build_lock_satisfies_the_build_system() -> None:
    build_system = pyproject()["build-system"]
    assert isinstance(build_system, dict)
    pins = read_lock(BUILD_LOCK)
    for spec in build_system["requires"]:
        requirement = Requirement(spec)
        version, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version)


def test_dockerfile_contract() -> None:
    instructions = dockerfile_instructions()
    args = [rest for keyword, rest in instructions if keyword == "ARG"]
    assert re.fullmatch(r"BASE_IMAGE=python:3\.11-slim[\w.-]*(@sha256:[0-9a-f]{64})?", args[0])
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert stages == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE} AS runtime"]
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "--require-hashes" in runs
    assert "--no-deps" in runs
    runtime = instructions[[i for i, (k, _) in enumerate(instructions) if k == "FROM"][1] :]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users == ["10001:10001"], "numeric non-root user, so runAsNonRoot can check it"
    (entrypoint,) = [json.loads(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert entrypoint[0].endswith("/dumb-init"), "exec form, with an init that forwards SIGTERM"
    assert entrypoint[-1].endswith("/bridge")
    (healthcheck,) = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_build_context_is_an_allow_list_of_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule.removeprefix("!").rstrip("/") for rule in rules if rule.startswith("!")}
    copied: set[str] = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in rest:
            copied.update(path.rstrip("/") for path in rest.split()[:-1])
    assert copied == allowed
    for path in copied:
        assert (ROOT / path).exists(), path
