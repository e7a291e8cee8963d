"""A partition leader of a three-node Apache Kafka cluster is SIGKILLed under load.

Replication factor 3, ``min.insync.replicas=2``, the bridge with its production defaults
(idempotent producer, ``acks=all``). The killed node comes back on its own storage after
the load, so the cluster is whole again for the tests after these.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bridge.config import Config
from bridge.kafka.clients import all_topics, ensure_topics, topic_partitions
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
)
from tests.kafka_cluster import KafkaCluster
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
from tests.reliability.webhook_load import read_events, sender

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SENDERS = 8
BEFORE_S = 3.0  # load before the kill
AFTER_S = 3.0  # load after the partition has a new leader


async def new_leader(cluster: KafkaCluster, topic: str, partition: int, old: int) -> int:
    """Wait until ``topic``/``partition`` is led by a node other than ``old``."""
    async with asyncio.timeout(60):
        while True:
            try:
                leader = await cluster.leader_of(topic, partition)
            except Exception:  # metadata from the dead node, or no leader for a moment
                leader = -1
            if leader not in (-1, old):
                return leader
            await asyncio.sleep(0.2)


async def end_offsets(bootstrap: str, topic: str) -> int:
    """The high watermarks of ``topic`` added up: the records it holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions: list[TopicPartition] = await topic_partitions(consumer, topic)
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def group_lag(config: Config) -> dict[int, int]:
    """Per commands partition: high watermark minus the worker group's committed offset."""
    topic = config.topics.commands
    partitions = [TopicPartition(topic, p) for p in range(config.kafka.topic_partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers)
    await admin.start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            config.kafka.consumer_group, partitions=partitions
        )
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    return {tp.partition: ends[tp] - max(0, committed[tp].offset) for tp in partitions}


async def test_partition_leader_sigkill_under_webhook_load(kafka_cluster: KafkaCluster) -> None:
    """8 senders post webhooks back to back; the leader of events partition 0 is SIGKILLed.
    Every 2xx is in the topic exactly as sent, no record is in the topic twice, and the
    topic's high watermarks add up to exactly the acknowledged deliveries."""
    config = bridge_config(kafka_cluster.bootstrap)
    assert config.kafka.enable_idempotence
    assert config.kafka.replication_factor == 3
    async with (
        running_bridge(config) as app,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        asyncio.timeout(180),
    ):
        leader = await kafka_cluster.leader_of(config.topics.events, 0)
        stop = asyncio.Event()
        senders = [asyncio.create_task(sender(n, session, app.url, stop)) for n in range(SENDERS)]
        await asyncio.sleep(BEFORE_S)
        killed = time.monotonic()
        kafka_cluster.kill(leader)
        successor = await new_leader(kafka_cluster, config.topics.events, 0, leader)
        failover_s = time.monotonic() - killed
        await asyncio.sleep(AFTER_S)
        stop.set()
        stopped = time.monotonic()
        deliveries = [d for batch in await asyncio.gather(*senders) for d in batch]
    await asyncio.to_thread(kafka_cluster.restart_node, leader)
    acknowledged = {d.request_id: d for d in deliveries if d.acknowledged}
    events = await read_events(kafka_cluster.bootstrap, config.topics.events, set(acknowledged))
    held = await end_offsets(kafka_cluster.bootstrap, config.topics.events)

    attempts = [a for d in deliveries for a in d.attempts]
    refused = [a for a in attempts if a.status == 503]
    assert {a.status for a in attempts} <= {204, 503}
    assert len(acknowledged) == len(deliveries)  # every delivery acknowledged in the end
    lost = [i for i in acknowledged if i not in events]
    assert lost == []
    for request_id, item in acknowledged.items():
        assert all(copy["data"]["raw"] == item.payload for copy in events[request_id])
    duplicated = [i for i, copies in events.items() if len(copies) > 1]
    assert duplicated == []
    assert held == len(acknowledged) == sum(len(c) for c in events.values())
    print(
        f"\nleader failover under webhook load: node {leader} (leader of events/0) killed, "
        f"node {successor} leads after {failover_s:.1f} s; {len(deliveries)} deliveries, "
        f"{len(attempts)} requests in {stopped - killed + BEFORE_S:.1f} s; 503: {len(refused)} "
        f"(slowest {max((a.answered - a.started for a in refused), default=0):.2f} s); "
        f"lost 0, in the topic twice {len(duplicated)}, high watermarks {held}"
    )


async def test_partition_leader_sigkill_under_a_command_stream(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    """Two commands-role processes work a stream of creates; the leader of commands
    partition 0 is SIGKILLed. Every create ends with one final result (repeats byte for
    byte), Bird holds exactly one connector per create, and no create reached Bird twice."""
    simulator = fast_simulator(install_delay_s=0.2, activate_delay_s=1.0)
    await simulator.start()
    try:
        # A failover takes 8 to 12 s here: a command whose ledger write waits through it
        # needs the production-like deadline, not the suite's short 10 s one.
        env = broker_env(
            kafka_cluster.bootstrap,
            **{**command_env(simulator.url), "BRIDGE_COMMANDS_DEADLINE_S": "60"},
        )
        config = bridge_config(kafka_cluster.bootstrap, **{**env, "BRIDGE_HTTP_PORT": "0"})
        await ensure_topics(
            config.kafka, all_topics(config.topics), compacted=[config.topics.ledger]
        )
        creates: list[dict[str, Any]] = []
        stop = asyncio.Event()

        async def stream(client: Any) -> None:
            while not stop.is_set() and len(creates) < 120:
                command = create_command(f"failover {len(creates)}")
                creates.append(command)
                await client.send(command)
                await asyncio.sleep(0.25)

        async with command_client(config) as client, asyncio.timeout(240):
            with (
                BridgeProcess(env, tmp_path / "w1.log") as w1,
                BridgeProcess(env, tmp_path / "w2.log") as w2,
            ):
                await asyncio.gather(w1.wait_ready(60), w2.wait_ready(60))
                producing = asyncio.create_task(stream(client))
                await asyncio.sleep(BEFORE_S)
                leader = await kafka_cluster.leader_of(config.topics.commands, 0)
                killed = time.monotonic()
                in_flight = sum(client.results.final(c["commandId"]) is None for c in creates)
                kafka_cluster.kill(leader)
                successor = await new_leader(kafka_cluster, config.topics.commands, 0, leader)
                failover_s = time.monotonic() - killed
                await asyncio.sleep(AFTER_S)
                stop.set()
                await producing
                ids = [c["commandId"] for c in creates]
                await wait_for(all_final(client, ids), timeout=90, what="every final result")
                finished = time.monotonic() - killed
                await wait_all_committed(config, len(ids), timeout=60)
                await asyncio.sleep(0.5)  # the last results are read
                outcomes = one_final_each(client, ids)
                repeated = repeats(client, ids)
        await asyncio.to_thread(kafka_cluster.restart_node, leader)
        assert in_flight > 0
        for data in outcomes.values():
            assert data["status"] == "succeeded", data["error"]
        assert len({d["connector"]["id"] for d in outcomes.values()}) == len(creates)
        names = sorted(c["name"] for c in await bird_connectors(simulator.url))
        assert names == sorted(c["connector"]["name"] for c in creates)
        assert await processed_creates(simulator.url) == len(creates)
        # The commands topic holds each command once: the client's producer is idempotent,
        # so its retries across the failover add no copy (its high watermarks say so).
        assert await end_offsets(kafka_cluster.bootstrap, config.topics.commands) == len(ids)
        # And the group's lag, from the high watermarks and its commits, is 0 everywhere.
        assert await group_lag(config) == dict.fromkeys(range(config.kafka.topic_partitions), 0)
        print(
            f"\nleader failover under a command stream: node {leader} (leader of commands/0) "
            f"killed with {in_flight} creates unfinished, node {successor} leads after "
            f"{failover_s:.1f} s; {len(creates)} creates all final {finished:.1f} s after the "
            f"kill; repeated finals {repeated}; connectors {len(names)}"
        )
    finally:
        await simulator.stop()


async def wait_fully_replicated(cluster: KafkaCluster, topic: str) -> float:
    """Wait until every partition of ``topic`` has all nodes in sync; the seconds it took."""
    began = time.monotonic()
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(120):
            while True:
                described = await admin.describe_topics([topic])
                if all(len(p["isr"]) == len(cluster.nodes) for p in described[0]["partitions"]):
                    return time.monotonic() - began
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def test_rolling_restart_of_all_three_brokers_under_webhook_load(
    kafka_cluster: KafkaCluster,
) -> None:
    """Each node in turn is stopped (SIGTERM: a controlled shutdown hands its leaderships
    over), started again on its storage, and the next waits until every partition is fully
    replicated again, while 8 senders post webhooks. Nothing acknowledged is lost, nothing
    is in the topic twice, the high watermarks add up."""
    config = bridge_config(kafka_cluster.bootstrap)
    steps: list[str] = []
    async with (
        running_bridge(config) as app,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        asyncio.timeout(400),
    ):
        await wait_fully_replicated(kafka_cluster, config.topics.events)
        stop = asyncio.Event()
        senders = [asyncio.create_task(sender(n, session, app.url, stop)) for n in range(SENDERS)]
        await asyncio.sleep(BEFORE_S)
        began = time.monotonic()
        for node in kafka_cluster.nodes:
            t = time.monotonic()
            await asyncio.to_thread(kafka_cluster.stop_node, node.node_id)
            stopped_s = time.monotonic() - t
            t = time.monotonic()
            await asyncio.to_thread(kafka_cluster.restart_node, node.node_id)
            back_s = time.monotonic() - t
            caught_up_s = await wait_fully_replicated(kafka_cluster, config.topics.events)
            steps.append(
                f"node {node.node_id}: stop {stopped_s:.1f} s, start {back_s:.1f} s, "
                f"in sync {caught_up_s:.1f} s"
            )
        rolled_s = time.monotonic() - began
        await asyncio.sleep(AFTER_S)
        stop.set()
        deliveries = [d for batch in await asyncio.gather(*senders) for d in batch]
    acknowledged = {d.request_id: d for d in deliveries if d.acknowledged}
    events = await read_events(kafka_cluster.bootstrap, config.topics.events, set(acknowledged))
    held = await end_offsets(kafka_cluster.bootstrap, config.topics.events)

    attempts = [a for d in deliveries for a in d.attempts]
    refused = [a for a in attempts if a.status == 503]
    assert {a.status for a in attempts} <= {204, 503}
    assert len(acknowledged) == len(deliveries)
    assert [i for i in acknowledged if i not in events] == []
    for request_id, item in acknowledged.items():
        assert all(copy["data"]["raw"] == item.payload for copy in events[request_id])
    duplicated = [i for i, copies in events.items() if len(copies) > 1]
    assert duplicated == []
    assert held == len(acknowledged) == sum(len(c) for c in events.values())
    print(
        f"\nrolling restart under webhook load: {rolled_s:.1f} s for three nodes "
        f"({'; '.join(steps)}); {len(deliveries)} deliveries, {len(attempts)} requests; "
        f"503: {len(refused)}; lost 0, in the topic twice 0, high watermarks {held}"
    )
