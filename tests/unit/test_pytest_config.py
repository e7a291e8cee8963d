"""The suite's pytest configuration, run for real on small test files in a scratch project.

Each case copies this project's pyproject.toml (so its [tool.pytest.ini_options]) next to
one test file and runs pytest on it in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run_pytest(
    tmp_path: Path, test_source: str, *, extra_ini: str = "", replace: dict[str, str] | None = None
) -> tuple[int, str]:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        assert old in pyproject, old
        pyproject = pyproject.replace(old, new)
    if extra_ini:
        marker = "[tool.pytest.ini_options]\n"
        pyproject = pyproject.replace(marker, marker + extra_ini + "\n")
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_case.py").write_text(test_source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_an_xfail_that_passes_fails_the_run(tmp_path: Path) -> None:
    code, output = run_pytest(
        tmp_path,
        "import pytest\n\n"
        "@pytest.mark.xfail(reason='the bug is fixed')\n"
        "def test_fixed() -> None:\n"
        "    pass\n",
    )
    assert code == 1, output
    assert "XPASS(strict)" in output


def test_a_hung_test_fails_at_its_timeout(tmp_path: Path) -> None:
    code, output = run_pytest(
        tmp_path,
        "import time\n\nimport pytest\n\n"
        "def test_default(request: pytest.FixtureRequest) -> None:\n"
        "    assert request.config.getini('timeout') == '300'\n\n"
        "@pytest.mark.timeout(1)\n"
        "def test_hangs() -> None:\n"
        "    time.sleep(30)\n",
    )
    assert code == 1, output
    assert "1 failed, 1 passed" in output
    assert "Timeout" in output


def test_a_hang_that_swallows_the_timeout_ends_the_run_with_every_stack(tmp_path: Path) -> None:
    """pytest-timeout's SIGALRM lands in a busy background task, which keeps the exception:
    the test would hang for ever. faulthandler's deadline prints the stacks and exits."""
    code, output = run_pytest(
        tmp_path,
        "import asyncio\n\nimport pytest\n\n"
        "@pytest.mark.timeout(1)\n"
        "async def test_hangs() -> None:\n"
        "    async def spin() -> None:\n"
        "        while True:\n"
        "            sum(range(20000))\n"
        "            await asyncio.sleep(0)\n"
        "    task = asyncio.create_task(spin())\n"
        "    await asyncio.Event().wait()\n"
        "    task.cancel()\n",
        replace={"faulthandler_timeout = 420": "faulthandler_timeout = 4"},
    )
    assert code != 0, output
    assert "Timeout (0:00:04)!" in output
    assert "in run_until_complete" in output  # where the loop sat, waiting on the test


def test_an_unknown_setting_is_a_usage_error(tmp_path: Path) -> None:
    """A misspelt setting stops the run with one line (without --strict-config it was a
    warning, which filterwarnings = error turned into an INTERNALERROR traceback)."""
    code, output = run_pytest(
        tmp_path, "def test_ok() -> None:\n    pass\n", extra_ini='timout = "30"'
    )
    assert code == pytest.ExitCode.USAGE_ERROR, output
    assert "ERROR: Unknown config option: timout" in output
    assert "INTERNALERROR" not in output
