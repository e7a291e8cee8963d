"""The ``bridge`` command line: --help on every subcommand, every option explained, --version."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import NOT_INSTALLED, _missing_dev_tool, build_parser, main

BRIDGE = str(Path(sys.executable).parent / "bridge")


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _subcommands(child, (*path, name))
    return found


SUBCOMMANDS = _subcommands(build_parser())


def test_every_subcommand_is_listed() -> None:
    paths = {" ".join(path) for path, _ in SUBCOMMANDS}
    assert {"", "run", "dev", "simulator", "subscriptions", "subscriptions ensure", "command"} <= (
        paths
    )


@pytest.mark.parametrize(
    ("path", "parser"), SUBCOMMANDS, ids=[" ".join(p) or "bridge" for p, _ in SUBCOMMANDS]
)
def test_help_works_and_every_option_is_explained(
    path: tuple[str, ...], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('bridge', *path))}")
    unexplained = [
        action.option_strings or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert unexplained == []
    for action in parser._actions:
        for option in action.option_strings:
            assert option in out


@pytest.mark.parametrize(
    "option",
    [
        "--host=127.0.0.1",
        "--port=0",
        "--access-key=k-12345678",
        "--organization-id=o",
        "--workspace-id=w",
        "--admin-token=t-12345678",
        "--install-delay=0.1",
        "--activate-delay=0.2",
        "--allow-http-urls",
        "--reject-duplicates",
        "--delivery-retry-base=0.5",
        "--delivery-retry-cap=5",
        "--delivery-max-attempts=3",
        "--delivery-timeout=2",
        "--latency=0.01",
        "--latency-jitter=0.01",
        "--error-rate=0.1",
        "--error-status=500",
        "--throttle-rate=0.1",
        "--throttle-no-retry-after-rate=0.1",
        "--retry-after=2",
        "--timeout-rate=0.1",
        "--hang=3",
        "--reset-rate=0.1",
        "--rate-limit-get=5",
        "--rate-limit-post=5",
        "--fail-installs",
        "--stuck-installs",
        "--seed=7",
        "--log-format=json",
        "--log-level=debug",
    ],
)
def test_bridge_simulator_takes_every_documented_option(option: str) -> None:
    args = build_parser().parse_args(["simulator", option])
    assert args.command == "simulator"
    documented = Path(__file__).parents[2].joinpath("docs", "simulator.md").read_text()
    assert f"`{option.split('=')[0]}" in documented


def test_version_and_simulator_help_as_processes() -> None:
    version = subprocess.run(
        [BRIDGE, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"bridge {importlib.metadata.version('channel-bridge')}"
    helped = subprocess.run(
        [BRIDGE, "simulator", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "--install-delay S" in helped.stdout
    assert "unrecognized" not in helped.stderr


def test_dev_banner_says_how_to_make_a_group_join_fast() -> None:
    from bridge.config import load
    from bridgedev.runner import banner, dev_environment

    config = load(dev_environment(kafka_port=19092, port=18080, simulator_port=18081))
    text = banner(config, kafka_port=19092, simulator_port=18081)
    assert "kcat -b 127.0.0.1:19092 -G my-group -X session.timeout.ms=6000 \\" in text
    assert '"session.timeout.ms": 6000' in text
    assert "session_timeout_ms=6000" in text


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["simulator", "--port", "0"], "simulator"),
        (["dev", "--port", "8080"], "dev"),
        (["run", "--role", "all"], None),
        (["command", "get", "--name", "dev"], None),
        (["--version"], None),
    ],
)
def test_only_the_development_subcommands_need_the_development_packages(
    argv: list[str], missing: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.cli._installed", lambda package: package == "bridge")
    assert _missing_dev_tool(argv) == missing
    monkeypatch.setattr("bridge.cli._installed", lambda package: True)
    assert _missing_dev_tool(argv) is None


def test_a_missing_development_package_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bridge.cli._installed", lambda package: False)
    assert main(["simulator", "--install-delay", "1"]) == 1
    assert capsys.readouterr().err == f"bridge simulator: {NOT_INSTALLED}\n"
    with pytest.raises(SystemExit) as exited:  # the rest of the command line still works
        main(["run", "--help"])
    assert exited.value.code == 0
