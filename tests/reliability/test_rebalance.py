"""Consumer-group rebalances while creates are in flight: workers join, leave gracefully
and die, each a ``bridge run --role commands`` process (on Apache Kafka with the production
session timeout, 10 s, heartbeat 3 s; on the embedded broker session 2 s, heartbeat 0.3 s)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from bridge.commands.executor import Executor
from bridge.commands.parse import Command
from bridge.commands.worker import _Rebalance
from bridge.kafka.clients import all_topics, ensure_topics
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    CommandClient,
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
)
from tests.kafka_cluster import Broker, KafkaCluster
from tests.kafka_helpers import bridge_config, broker_env
from tests.reliability import (
    BridgeProcess,
    all_final,
    one_final_each,
    processed_creates,
    repeats,
    wait_all_committed,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_CREATES = 50


async def stream_creates(
    client: CommandClient, creates: list[dict[str, Any]], stop: asyncio.Event
) -> None:
    """One create every 0.4 s until ``stop`` (at most MAX_CREATES)."""
    while not stop.is_set() and len(creates) < MAX_CREATES:
        command = create_command(f"rebalance {len(creates)}")
        creates.append(command)
        await client.send(command)
        await asyncio.sleep(0.4)


def handled(log: Path) -> int:
    """Commands a worker finished, from its log."""
    return len(re.findall(r"\] command +action=", log.read_text()))


async def test_workers_joining_leaving_and_dying_mid_stream(broker: Broker, tmp_path: Path) -> None:
    """W1 works a stream of creates (each in flight ~2 s). W2 joins; W3 joins too (three
    workers in the group) and is SIGKILLed mid-stream; then W2 leaves with SIGTERM. Every
    create completes with exactly one distinct final result and exactly one connector."""
    simulator = fast_simulator(install_delay_s=0.2, activate_delay_s=1.5)
    await simulator.start()
    try:
        env = broker_env(broker.bootstrap, **command_env(simulator.url))
        if isinstance(broker, KafkaCluster):  # the production defaults: session 10 s
            assert "BRIDGE_KAFKA_SESSION_TIMEOUT_MS" not in env
            assert "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS" not in env
        else:  # the embedded broker holds a join for half the session: short ones
            assert env["BRIDGE_KAFKA_SESSION_TIMEOUT_MS"] == "2000"
        config = bridge_config(broker.bootstrap, **{**env, "BRIDGE_HTTP_PORT": "0"})
        await ensure_topics(
            config.kafka, all_topics(config.topics), compacted=[config.topics.ledger]
        )
        logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2", "w3")}
        creates: list[dict[str, Any]] = []
        in_flight: dict[str, int] = {}

        def unfinished() -> int:
            return sum(client.results.final(c["commandId"]) is None for c in creates)

        async with command_client(config) as client, asyncio.timeout(120):
            with BridgeProcess(env, logs["w1"]) as w1:
                await w1.wait_ready()
                stop = asyncio.Event()
                started = time.monotonic()
                producing = asyncio.create_task(stream_creates(client, creates, stop))
                await asyncio.sleep(1.0)
                with BridgeProcess(env, logs["w2"]) as w2:
                    in_flight["w2 joins"] = unfinished()
                    await w2.wait_ready()
                    await asyncio.sleep(2.0)
                    with BridgeProcess(env, logs["w3"]) as w3:
                        in_flight["w3 joins (three workers)"] = unfinished()
                        await w3.wait_ready()
                        await asyncio.sleep(1.0)
                        in_flight["w3 dies (SIGKILL)"] = unfinished()
                        w3.kill()
                    await asyncio.sleep(1.0)
                    in_flight["w2 leaves (SIGTERM)"] = unfinished()
                    assert await w2.terminate() == 0
                stop.set()
                await producing
                ids = [c["commandId"] for c in creates]
                await wait_for(all_final(client, ids), timeout=60, what="every final result")
                finished = time.monotonic() - started
                await wait_all_committed(config, len(ids))
                await asyncio.sleep(0.5)  # the last results are read
                outcomes = one_final_each(client, ids)
                repeated = repeats(client, ids)

        assert all(count > 0 for count in in_flight.values()), in_flight
        for data in outcomes.values():
            assert data["status"] == "succeeded", data["error"]
        assert len({d["connector"]["id"] for d in outcomes.values()}) == len(creates)
        names = sorted(c["name"] for c in await bird_connectors(simulator.url))
        assert names == sorted(c["connector"]["name"] for c in creates)
        assert await processed_creates(simulator.url) == len(creates)
        # The work really moved: W1 gave partitions away, W2 finished commands of its own.
        assert "partitions revoked" in logs["w1"].read_text()
        assert handled(logs["w2"]) > 0
        assert "partitions assigned" in logs["w3"].read_text()
        print(
            f"\nrebalance: {len(creates)} creates, all final after {finished:.1f}s; "
            f"unfinished at each change {in_flight}; finished by w1/w2/w3 "
            f"{handled(logs['w1'])}/{handled(logs['w2'])}/{handled(logs['w3'])}; "
            f"repeated finals {repeated}"
        )
    finally:
        await simulator.stop()


async def test_no_command_runs_before_the_ledger_barrier_of_its_assignment(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """guarantees.md: on assignment the replica first reads the ledger up to a barrier, so
    it has seen everything the previous owner wrote. No command of the assignment may start
    before that read is done. (aiokafka hands out the records of an assignment before the
    listener returns; without the worker waiting, a command started ~0.25 s too early.)"""
    moments: dict[str, list[float]] = {"barrier done": [], "run": []}
    assigned = _Rebalance.on_partitions_assigned
    run = Executor.run

    async def timed_barrier(self: _Rebalance, partitions: Iterable[TopicPartition]) -> None:
        await assigned(self, partitions)
        moments["barrier done"].append(time.monotonic())

    async def recorded_run(self: Executor, command: Command) -> str:
        moments["run"].append(time.monotonic())
        return await run(self, command)

    monkeypatch.setattr(_Rebalance, "on_partitions_assigned", timed_barrier)
    monkeypatch.setattr(Executor, "run", recorded_run)
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        await ensure_topics(
            config.kafka, all_topics(config.topics), compacted=[config.topics.ledger]
        )
        async with command_client(config) as client:
            # Waiting in the topic when the worker is assigned its partitions.
            listing = {"commandId": f"list-{time.time_ns()}", "action": "list"}
            await client.send(listing)
            async with running_bridge(config, ["commands"]):
                final = await client.final(listing["commandId"], timeout=30)
        assert final["data"]["status"] == "succeeded"
    finally:
        await simulator.stop()
    assert moments["barrier done"]
    assert moments["run"]
    assert moments["run"][0] >= moments["barrier done"][0], (
        f"command started {moments['barrier done'][0] - moments['run'][0]:.2f}s "
        "before the ledger barrier was read"
    )
