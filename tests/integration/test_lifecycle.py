"""The ``bridge run`` process as an operator sees it: start, readiness, SIGTERM, bad config."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge, make_runner
from bridge.kafka.embedded import free_port
from tests.command_helpers import command_env
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, broker_env

pytestmark = pytest.mark.integration

BRIDGE = [str(Path(sys.executable).parent / "bridge")]


@contextmanager
def bridge_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [*BRIDGE, "run", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


async def wait_status(url: str, expected: int, timeout: float = 20) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == expected:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def test_sigterm_drains_and_exits_zero(broker: Broker) -> None:
    port = free_port()
    env = broker_env(broker.bootstrap, BRIDGE_HTTP_PORT=str(port), BRIDGE_LOG_FORMAT="json")
    base = f"http://127.0.0.1:{port}"
    with bridge_process(env, "--role", "ingest") as process:
        await wait_status(base + "/readyz", 200)
        raw, headers = delivery(channel_event())
        async with (
            aiohttp.ClientSession() as session,
            session.post(base + "/webhooks/bird", data=raw, headers=headers) as r,
        ):
            assert r.status == 204
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        took = time.monotonic() - started
        assert process.stdout is not None
        output = process.stdout.read().decode()
    assert took < 10
    assert '"event":"stopped"' in output
    assert '"event":"webhook"' in output
    assert "test-signing-key" not in output


async def test_kafka_down_means_not_ready_503_and_a_clean_exit() -> None:
    port, dead = free_port(), free_port()
    env = broker_env(f"127.0.0.1:{dead}", BRIDGE_HTTP_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    with bridge_process(env, "--role", "ingest") as process:
        await wait_status(base + "/healthz", 200)
        await wait_status(base + "/readyz", 503, timeout=2)
        raw, headers = delivery(channel_event())
        async with (
            aiohttp.ClientSession() as session,
            session.post(base + "/webhooks/bird", data=raw, headers=headers) as r,
        ):
            assert r.status == 503
            assert r.headers["Retry-After"] == "5"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert time.monotonic() - started < 10


def test_bad_configuration_stops_start_up_naming_each_variable() -> None:
    env = {"BRIDGE_HTTP_PORT": "http", "BRIDGE_WEBHOOK_SIGNING_KEY": ""}
    result = subprocess.run(
        [*BRIDGE, "run", "--role", "ingest"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"BRIDGE_HTTP_PORT: expected a whole number" in result.stderr


def test_missing_signing_key_is_refused_unless_insecure() -> None:
    result = subprocess.run(
        [*BRIDGE, "run", "--role", "ingest"],
        env={**os.environ, "BRIDGE_HTTP_PORT": "0"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"BRIDGE_WEBHOOK_SIGNING_KEY: required" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2, 0.5, 1.0])
async def test_stopped_while_starting_leaves_no_client_open(broker: Broker, delay_s: float) -> None:
    """Stopped at any moment of its start (here: after ``delay_s``), the commands role
    closes every Kafka client it opened: an unclosed one is a ResourceWarning, which the
    suite turns into a failure."""
    config = bridge_config(broker.bootstrap, **command_env("http://127.0.0.1:9"))
    bridge = Bridge(config, ["commands"])
    runner = make_runner(bridge, shutdown_timeout=5)
    await runner.setup()
    try:
        await asyncio.sleep(delay_s)
    finally:
        await runner.cleanup()
    gc.collect()
