"""The image's inputs: hashed lock files against pyproject.toml, the Dockerfile's contract.

File checks, and the image's wheel built and imported as the Dockerfile builds it; the real
image build and run is scripts/image-smoke.sh.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bridge.cli import NOT_INSTALLED
from tests.k8s.render import DOCKERFILE, ROOT

RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
# The image's optional extras (build argument BRIDGE_EXTRAS), each from its own lock.
EXTRA_LOCKS = {"msk": ROOT / "requirements" / "msk.txt"}

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


def lock_hashes(path: Path) -> dict[str, set[str]]:
    """Package -> the sha256 hashes a pip-compile lock accepts for it."""
    hashes: dict[str, set[str]] = {}
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            current = str(canonicalize_name(match["name"]))
            hashes[current] = set()
        hashes.setdefault(current, set()).update(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    hashes.pop("", None)
    return hashes


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
    for lock in (RUNTIME_LOCK, BUILD_LOCK, *EXTRA_LOCKS.values()):
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


def test_each_extra_lock_pins_its_extra_and_keeps_the_runtime_pins() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    runtime = read_lock(RUNTIME_LOCK)
    runtime_hashes = lock_hashes(RUNTIME_LOCK)
    for extra, lock in EXTRA_LOCKS.items():
        pins = read_lock(lock)
        for spec in project["optional-dependencies"][extra]:
            requirement = Requirement(spec)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{name} (extra {extra}) is missing from {lock.name}"
            assert requirement.specifier.contains(pins[name][0], prereleases=True), (
                f"{lock.name} pins {name}=={pins[name][0]}, pyproject.toml's {extra} wants {spec}"
            )
        # Installed after runtime.txt into the same venv: a package in both must be the
        # same release with the same files, which the constraint makes pip-compile keep.
        source = lock.with_suffix(".in").read_text(encoding="utf-8").splitlines()
        assert "-c runtime.txt" in source, f"{lock.with_suffix('.in').name}: -c runtime.txt"
        hashes = lock_hashes(lock)
        for shared in set(pins) & set(runtime):
            assert pins[shared][0] == runtime[shared][0], f"{lock.name} moves {shared}"
            assert hashes[shared] == runtime_hashes[shared], f"{lock.name}: {shared} hashes"


def test_each_extra_lock_is_a_closure_over_the_runtime_lock() -> None:
    """What `pip check` proves in the image build, offline: every requirement of a locked
    package (read from the installed distribution's metadata) is locked too, and in range
    where the installed release is the pinned one."""
    pinned = read_lock(RUNTIME_LOCK)
    for extra, lock in EXTRA_LOCKS.items():
        pins = read_lock(lock)
        everything = {**pinned, **pins}
        for name, (version, _) in pins.items():
            distribution = importlib.metadata.distribution(name)
            same_release = Version(distribution.version) == version
            for spec in distribution.requires or []:
                requirement = Requirement(spec)
                if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                    continue
                needed = canonicalize_name(requirement.name)
                assert needed in everything, f"{name} needs {needed}: not in {lock.name}"
                if same_release:
                    assert requirement.specifier.contains(everything[needed][0], True), (
                        f"{name}=={version} wants {spec}, {lock.name} pins "
                        f"{needed}=={everything[needed][0]}"
                    )
        assert pins, f"{lock.name} pins nothing for {extra}"


def test_dockerfile_installs_each_extra_from_its_hashed_lock() -> None:
    instructions = dockerfile_instructions()
    args = [rest for keyword, rest in instructions if keyword == "ARG"]
    assert 'BRIDGE_EXTRAS=""' in args, "no extra by default: the image stays without boto3"
    (install,) = [
        rest for keyword, rest in instructions if keyword == "RUN" and "runtime.txt" in rest
    ]
    arms = dict(
        re.findall(
            r"(\w+)\) /opt/venv/bin/pip install --require-hashes --no-deps "
            r"-r requirements/(\w+)\.txt ;;",
            install,
        )
    )
    assert arms == {extra: extra for extra in EXTRA_LOCKS}
    assert '"") ;;' in install, "BRIDGE_EXTRAS empty: runtime.txt alone"
    assert re.search(r"\*\) echo [^;]*>&2; exit 1 ;;", install), "an unknown extra fails"
    project = pyproject()["project"]
    assert isinstance(project, dict)
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for extra, lock in EXTRA_LOCKS.items():
        assert extra in project["optional-dependencies"]
        assert f"requirements/{lock.name}" in copied
    labels = " ".join(rest for keyword, rest in instructions if keyword == "LABEL")
    assert 'channel-bridge.extras="${BRIDGE_EXTRAS}"' in labels


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


DEV_PACKAGES = ("birdsim", "bridgedev")


def builder_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from a stage)."""
    return [
        (rest.split()[:-1], rest.split()[-1])
        for keyword, rest in dockerfile_instructions()
        if keyword == "COPY" and "--from=" not in rest
    ]


def image_sources(into: Path) -> Path:
    """The builder stage's /src: what the Dockerfile copies from the context, copied here."""
    for sources, destination in builder_copies():
        target = into / destination
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(
                    path, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    return into


def test_the_image_copies_only_the_production_package() -> None:
    packages = {
        source.rstrip("/")
        for sources, _ in builder_copies()
        for source in sources
        if (ROOT / source / "__init__.py").exists()
    }
    assert packages == {"bridge"}
    for package in DEV_PACKAGES:
        assert (ROOT / package / "__init__.py").exists(), f"{package} moved: update this test"
    # The build itself fails if a development package became importable.
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    (guard,) = [run for run in runs if "find_spec" in run]
    assert all(f"'{package}'" in guard for package in DEV_PACKAGES)


def test_the_images_python_cannot_import_the_simulator(tmp_path: Path) -> None:
    """Build the wheel the image installs (as the Dockerfile does: its sources, no build
    isolation), then run Python on that wheel and the runtime dependencies alone."""
    src = image_sources(tmp_path / "src")
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--quiet", "--wheel-dir", str(tmp_path / "wheels"), str(src)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("channel_bridge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
        archive.extractall(tmp_path / "installed")
    assert {name for name in top if not name.endswith(".dist-info")} == {"bridge"}

    # -S: no .pth files, so the source checkout's editable install is not on the path;
    # the dependencies come from this virtualenv's site-packages, the project from the wheel.
    code = f"""
import contextlib, importlib.util, io, sys
sys.path[:] = [{str(tmp_path / "installed")!r}, {sysconfig.get_paths()["purelib"]!r}, *sys.path[1:]]
print([m for m in {DEV_PACKAGES!r} if importlib.util.find_spec(m)])
try:
    import birdsim
except ModuleNotFoundError as exc:
    print("ModuleNotFoundError", exc.name)
from bridge import cli
print(cli.__file__.startswith({str(tmp_path / "installed")!r}))
for command in (["simulator", "--port", "0"], ["dev"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(command)
    print(code, err.getvalue().strip())
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
    cli.main(["--help"])
print("run" in out.getvalue() and "simulator" in out.getvalue())
"""
    ran = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[:3] == ["[]", "ModuleNotFoundError birdsim", "True"]
    for line, command in zip(lines[3:5], ("simulator", "dev"), strict=True):
        assert line == f"1 bridge {command}: {NOT_INSTALLED}"
    assert lines[5] == "True"
