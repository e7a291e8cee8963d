"""The command ledger really compacting, on Apache Kafka (the embedded broker never compacts).

The ledger topic gets the bridge's own configs (``cleanup.policy=compact,delete``, 30 days)
plus a fast cleaner: segments roll every 200 ms and any dirt makes a log cleanable. While
creates run, a finished command's ``started`` and ``accepted`` entries are cleaned away;
a replay of the command is then still answered byte for byte, by the running worker and
by a fresh one that loads the compacted ledger.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from bridge.config import Config
from bridge.kafka.clients import LEDGER_TOPIC_CONFIG
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    FINAL,
    Results,
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
)
from tests.kafka_cluster import KafkaCluster
from tests.kafka_helpers import bridge_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_CLEANER = {
    **LEDGER_TOPIC_CONFIG,
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}


def finals_raw(results: Results, command_id: str) -> list[bytes]:
    """The final result records of ``command_id``, as the bytes read from the topic."""
    return [
        raw
        for raw, parsed in zip(
            results.raw.get(command_id, []), results.by_command.get(command_id, []), strict=True
        )
        if parsed["data"]["status"] in FINAL
    ]


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as the bridge's producer uses it."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def create_on(partition: int, partitions: int, name: str) -> dict[str, Any]:
    """A create whose ledger entries land on ``partition`` (the ledger is keyed by commandId)."""
    while True:
        command = create_command(name)
        command["commandId"] = f"compact-{uuid.uuid4()}"
        if partition_of(command["commandId"], partitions) == partition:
            return command


async def ledger_partition(config: Config, partition: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in one ledger partition, up to its high watermark."""
    tp = TopicPartition(config.topics.ledger, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(15):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=200)
                records.extend(batch.get(tp, []))
        return records
    finally:
        await consumer.stop()


async def test_the_ledger_compacts_while_commands_run_and_replays_stay_byte_for_byte(
    kafka: KafkaCluster,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(kafka.bootstrap, **command_env(simulator.url))
        partitions = config.kafka.topic_partitions
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        config.topics.ledger,
                        partitions,
                        kafka.replication_factor,
                        topic_configs=FAST_CLEANER,
                    )
                ]
            )
        finally:
            await admin.close()
        first = create_on(0, partitions, "compacted")
        key = first["commandId"].encode()
        async with running_bridge(config, ["commands"]), command_client(config) as client:
            answer = await client.run(first)
            assert answer["data"]["status"] == "succeeded"
            before = [r for r in await ledger_partition(config, 0) if r.key == key]
            # Up to 3 states (started, accepted, final); under load the cleaner may already
            # have removed the earlier ones. The final one is there either way.
            assert 1 <= len(before) <= 3
            assert all(r.value is not None for r in before)

            # More creates on the same partition roll segments; the cleaner runs meanwhile.
            began = time.monotonic()
            creates = 0
            compacted: list[ConsumerRecord[bytes, bytes]] = []
            while time.monotonic() - began < 90:
                batch = [create_on(0, partitions, f"filler {creates + i}") for i in range(3)]
                done = await asyncio.gather(*(client.run(c) for c in batch))
                assert all(d["data"]["status"] == "succeeded" for d in done)
                creates += len(batch)
                await asyncio.sleep(0.3)
                compacted = await ledger_partition(config, 0)
                if sum(r.key == key for r in compacted) == 1:
                    break
            waited = time.monotonic() - began
            mine = [r for r in compacted if r.key == key]
            # Only the final entry is left, at the offset it was written to.
            assert [(r.offset, r.value) for r in mine] == [(before[-1].offset, before[-1].value)]
            offsets = [r.offset for r in compacted]
            assert len(offsets) < offsets[-1] - offsets[0] + 1  # holes: records cleaned away

            await client.send(first)  # a redelivery after compaction
            async with asyncio.timeout(20):
                while len(finals_raw(client.results, first["commandId"])) < 2:
                    await asyncio.sleep(0.05)
            finals = finals_raw(client.results, first["commandId"])
        async with running_bridge(config, ["commands"]), command_client(config) as fresh:
            await fresh.send(first)  # a fresh worker, loading the compacted ledger
            async with asyncio.timeout(30):
                while len(finals_raw(fresh.results, first["commandId"])) < 3:
                    await asyncio.sleep(0.05)
            again = finals_raw(fresh.results, first["commandId"])
        assert len(finals) == 2
        assert finals[0] == finals[1]  # the running worker's answer, byte for byte
        assert again == [finals[0]] * 3  # and the fresh worker's
        names = [c["name"] for c in await bird_connectors(simulator.url)]
        assert names.count("compacted") == 1  # executed once
        print(
            f"\nledger compaction: {creates} creates until the cleaner ran "
            f"({waited:.1f} s); partition 0 keeps {len(compacted)} of "
            f"{offsets[-1] - offsets[0] + 1} offsets"
        )
    finally:
        await simulator.stop()
