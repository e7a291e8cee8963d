"""Read a topic from its beginning to its end as of the start, in bounded batches (I/O).

The end of each partition is the high watermark of the first fetch answer (correct on
every broker, unlike ``end_offsets`` on the embedded one, broker-notes.md section 1);
records written after the scan began are left for the next scan. Memory is bounded by
one batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.structs import ConsumerRecord

from bridge.config import KafkaConfig
from bridge.kafka.clients import (
    common_settings,
    consumer_settings,
    start_client,
    stop_client,
    topic_partitions,
)

Message: TypeAlias = ConsumerRecord[bytes, bytes]


async def scan_partitions(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], *, batch: int = 500
) -> AsyncIterator[list[Message]]:
    """Batches of records of ``partitions`` (assigned to ``consumer`` here) up to their end."""
    if not partitions:
        return
    consumer.assign(list(partitions))
    await consumer.seek_to_beginning(*partitions)
    ends: dict[TopicPartition, int] = {}
    pending = set(partitions)
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=500, max_records=batch)
        out: list[Message] = []
        for tp, records in batches.items():
            end = ends.get(tp)
            out.extend(r for r in records if end is None or r.offset < end)
        for tp in list(pending):
            if tp not in ends:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                ends[tp] = highwater
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
                consumer.pause(tp)
        if out:
            yield out


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a library logger for a block (its connection errors, while a one-shot tool
    probes Kafka and says what failed in one line of its own)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def probe(kafka: KafkaConfig) -> None:
    """Raise ``KafkaError`` unless Kafka answers; for one-shot tools, which say so in one
    line (aiokafka's own log line per failed attempt is silenced meanwhile)."""
    # A bare client: a consumer stopped right after it started can raise CancelledError
    # from its stop() (aiokafka 0.14 awaits a task it cancelled before it ever ran).
    client = AIOKafkaClient(**common_settings(kafka))
    try:
        with quiet_logger("aiokafka"):
            await client.bootstrap()
    finally:
        await stop_client(client)


async def scan_topic(
    kafka: KafkaConfig, topic: str, *, batch: int = 500
) -> AsyncIterator[list[Message]]:
    """Every record of ``topic`` up to its end, in batches of at most ``batch``."""
    consumer = AIOKafkaConsumer(**consumer_settings(kafka, group=None))
    try:
        await start_client(consumer)
        partitions = await topic_partitions(consumer, topic, wait_s=2.0)
        async for records in scan_partitions(consumer, partitions, batch=batch):
            yield records
    finally:
        await stop_client(consumer)
