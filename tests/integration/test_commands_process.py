"""The command worker as a process: SIGKILL at bad moments, restart, SIGTERM drain."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from birdsim.settings import DEV_ACCESS_KEY
from bridge.kafka.clients import all_topics, ensure_topics
from bridge.kafka.embedded import free_port
from tests.command_helpers import (
    CommandClient,
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    simulator_json,
)
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, broker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BRIDGE = str(Path(sys.executable).parent / "bridge")


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [BRIDGE, "run", "--role", "commands"],
            env={**os.environ, **env, "BRIDGE_HTTP_PORT": str(free_port())},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def wait_for(predicate: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_sigkill_at_random_points_never_creates_twice(broker: Broker, tmp_path: Path) -> None:
    """Kill the worker (SIGKILL) while creates are in flight, at three kinds of moment, and
    restart it each time: every command ends with one final outcome, one connector each."""
    simulator = fast_simulator(install_delay_s=0.2, activate_delay_s=1.5)
    await simulator.start()
    log = tmp_path / "worker.log"
    try:
        env = broker_env(broker.bootstrap, **command_env(simulator.url))
        config = bridge_config(broker.bootstrap, **{**env, "BRIDGE_HTTP_PORT": "0"})
        await ensure_topics(
            config.kafka, all_topics(config.topics), compacted=[config.topics.ledger]
        )
        async with command_client(config) as client:
            commands = [create_command(f"crash {i}") for i in range(9)]
            ids = [c["commandId"] for c in commands]
            # Moment 1: Bird is slow to answer the POST; kill while the calls are open
            # (Bird still creates them: the restarted worker must find, not re-create).
            await simulator_json(simulator.url, "PUT", "/_simulator/faults", {"latency_s": 1.0})
            with worker(env, log) as process:
                for command in commands[:3]:
                    await client.send(command)
                await wait_for(lambda: _posts(simulator) >= 1, timeout=30)
                await asyncio.sleep(0.3)
                process.send_signal(signal.SIGKILL)
            await simulator_json(simulator.url, "PUT", "/_simulator/faults", {})
            # Moment 2: after `accepted`, while following the install.
            with worker(env, log) as process:
                for command in commands[3:6]:
                    await client.send(command)
                await wait_for(
                    lambda: all("accepted" in client.results.statuses(i) for i in ids[3:6])
                )
                process.send_signal(signal.SIGKILL)
            # Moment 3: right after the records are produced.
            with worker(env, log) as process:
                for command in commands[6:]:
                    await client.send(command)
                await asyncio.sleep(0.8)
                process.send_signal(signal.SIGKILL)
            # Restart and let everything finish.
            with worker(env, log):
                for command_id in ids:
                    await client.final(command_id, timeout=60)
                await asyncio.sleep(1.0)  # any stray repeats arrive now
            _assert_one_outcome_each(client, ids)
        connectors = await bird_connectors(simulator.url)
        names = sorted(c["name"] for c in connectors)
        assert names == sorted(c["connector"]["name"] for c in commands)
        assert DEV_ACCESS_KEY not in log.read_text()
    finally:
        await simulator.stop()


def _posts(simulator: Any) -> int:
    return len(
        [r for r in simulator.simulator.journal.query({"method": "POST"}) if "connectors" in r.path]
    )


def _assert_one_outcome_each(client: CommandClient, ids: list[str]) -> None:
    for command_id in ids:
        finals = [
            raw
            for raw, event in zip(
                client.results.raw[command_id], client.results.by_command[command_id], strict=True
            )
            if event["data"]["status"] in ("succeeded", "failed")
        ]
        assert finals, command_id
        assert all(f == finals[0] for f in finals), "repeats must carry the same content"
        assert b'"succeeded"' in finals[0]


async def test_sigterm_lets_in_flight_commands_finish(broker: Broker, tmp_path: Path) -> None:
    simulator = fast_simulator(install_delay_s=0.2, activate_delay_s=1.5)
    await simulator.start()
    try:
        env = broker_env(broker.bootstrap, **command_env(simulator.url))
        config = bridge_config(broker.bootstrap, **{**env, "BRIDGE_HTTP_PORT": "0"})
        await ensure_topics(
            config.kafka, all_topics(config.topics), compacted=[config.topics.ledger]
        )
        async with command_client(config) as client:
            command = create_command("drain me")
            with worker(env, tmp_path / "worker.log") as process:
                await client.send(command)
                await wait_for(lambda: "accepted" in client.results.statuses(command["commandId"]))
                process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(process.wait, 20) == 0
            final = await client.final(command["commandId"], timeout=10)
            assert final["data"]["status"] == "succeeded"
        assert "draining in-flight commands" in (tmp_path / "worker.log").read_text()
    finally:
        await simulator.stop()
