"""The benchmark's librdkafka baseline (``bench.rdkafka``) publishes what the aiokafka one
does: every record acknowledged, headers intact, each key on the partition the bridge's
partitioner picks (murmur2, as Java's clients; librdkafka's own default is CRC32)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bridge.config import Config
from bridge.kafka.clients import CachedPartitioner, ensure_topics
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic

pytestmark = pytest.mark.integration

rdkafka = pytest.importorskip("bench.rdkafka", reason="confluent-kafka is a dev dependency")


@asynccontextmanager
async def producing(broker: Broker) -> AsyncIterator[tuple[Any, Config]]:
    """The librdkafka baseline started on ``broker``, its events topic created."""
    config = bridge_config(broker.bootstrap)
    await ensure_topics(config.kafka, [config.topics.events])
    producer = rdkafka.RdkafkaProducer(broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        yield producer, config
    finally:
        await producer.stop()


async def test_rdkafka_baseline_publishes_like_the_bridge(any_broker: Broker) -> None:
    broker = any_broker
    async with producing(broker) as (producer, config):
        topic = config.topics.events
        async with asyncio.timeout(30):
            await asyncio.gather(
                *(
                    producer.send_and_wait(
                        topic,
                        b'{"n": %d}' % n,
                        key=f"channel-{n % 13}".encode(),
                        headers=[("ce_id", str(n).encode())],
                    )
                    for n in range(200)
                )
            )
    records = await read_topic(broker.bootstrap, topic, expect=200)
    assert sorted(r.value for r in records) == sorted(b'{"n": %d}' % n for n in range(200))
    partitions = list(range(config.kafka.topic_partitions))
    assert len({r.partition for r in records}) > 1, "keys spread over the topic's partitions"
    pick = CachedPartitioner()
    for r in records:
        assert r.key is not None
        n = int(r.value[6:-1])
        assert r.key == f"channel-{n % 13}".encode()
        assert list(r.headers) == [("ce_id", str(n).encode())]
        assert r.partition == pick(r.key, partitions, partitions), r.key


async def test_rdkafka_baseline_raises_kafkas_error(broker: Broker) -> None:
    """A record Kafka refuses fails its wait instead of hanging or passing."""
    async with producing(broker) as (producer, config):
        with pytest.raises(Exception, match=r"(?i)size|large"):
            async with asyncio.timeout(30):
                await producer.send_and_wait(config.topics.events, b"x" * 2_000_000)
