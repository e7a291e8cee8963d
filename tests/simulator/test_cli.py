"""The `bridge simulator` command: options, environment, banner, signals, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import pytest

from birdsim import DEFAULT_ORGANIZATION_ID, DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY
from birdsim.cli import DEFAULT_PORT, main, parse_options
from birdsim.settings import InvalidSettings


def test_defaults() -> None:
    options = parse_options([], {})
    s = options.settings
    assert (options.host, options.port) == ("127.0.0.1", DEFAULT_PORT)
    assert s.access_keys == (DEV_ACCESS_KEY,)
    assert (s.organization_id, s.workspace_ids) == (
        DEFAULT_ORGANIZATION_ID,
        (DEFAULT_WORKSPACE_ID,),
    )
    assert (s.allow_http_urls, s.reject_duplicates, s.admin_token) == (False, False, None)
    assert s.faults.rate_limit_get_per_s == 50.0


def test_environment_then_flags() -> None:
    env = {
        "BRIDGE_BIRD_ACCESS_KEY": "from-env",
        "BRIDGE_BIRD_ORGANIZATION_ID": "o-env",
        "BRIDGE_BIRD_WORKSPACE_ID": "w-env",
    }
    from_env = parse_options([], env).settings
    assert (from_env.access_keys, from_env.organization_id, from_env.workspace_ids) == (
        ("from-env",),
        "o-env",
        ("w-env",),
    )
    argv = [
        "--access-key=a",
        "--access-key=b",
        "--workspace-id=w1",
        "--workspace-id=w2",
        "--port=0",
        "--install-delay=0.1",
        "--allow-http-urls",
        "--reject-duplicates",
        "--error-rate=0.25",
        "--throttle-rate=0.5",
        "--rate-limit-get=10",
        "--fail-installs",
        "--seed=3",
    ]
    options = parse_options(argv, env)
    s = options.settings
    assert s.access_keys == ("a", "b")
    assert s.workspace_ids == ("w1", "w2")
    assert options.port == 0
    assert (s.install_delay_s, s.allow_http_urls, s.reject_duplicates) == (0.1, True, True)
    f = s.faults
    assert (f.error_rate, f.throttle_rate, f.rate_limit_get_per_s) == (0.25, 0.5, 10.0)
    assert (f.fail_installs, f.seed) == (True, 3)


def test_every_problem_reported_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidSettings) as exc:
        parse_options(["--reset-rate=2", "--install-delay=-1", "--port=70000"], {})
    assert exc.value.problems == [
        "install_delay_s: must be >= 0",
        "reset_rate: must be between 0 and 1",
        "port: must be in 0..65535",
    ]
    assert main(["--delivery-max-attempts=99"]) == 2
    assert "delivery_max_attempts: must be in 1..36" in capsys.readouterr().err


def test_port_in_use_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() configures process-wide logging; keep the test process's configuration.
    monkeypatch.setattr("birdsim.cli.logs.configure", lambda **_: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([f"--port={port}", "--log-level=warning"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_runs_until_signalled_and_exits_0(stop_signal: signal.Signals) -> None:
    env = {**os.environ, "BRIDGE_BIRD_ACCESS_KEY": "real-secret-key"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "birdsim",
        "--port=0",
        "--log-format=json",
        "--log-level=debug",  # successful requests are logged at debug
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert first.startswith("Bird simulator listening on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1].strip()
        headers = {"Authorization": "AccessKey real-secret-key"}
        path = f"/workspaces/{DEFAULT_WORKSPACE_ID}/connectors"
        async with (
            aiohttp.ClientSession(base_url=url, headers=headers) as client,
            client.get(path) as response,
        ):
            assert response.status == 200
        process.send_signal(stop_signal)
        out, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    banner = first + out.decode()
    assert DEFAULT_ORGANIZATION_ID in banner
    assert "real-secret-key" not in banner + err.decode()
    assert b'"event":"request"' in err  # one JSON log line per request
