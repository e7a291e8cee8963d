"""Snapshots of the ledger's index in Kafka (I/O; the bytes are ``ledger_image.py``).

The snapshots topic (``BRIDGE_TOPIC_LEDGER_SNAPSHOTS``) has two partitions: partition 0
holds manifests, all under one key, so its last record is the latest snapshot; partition 1
holds the chunks of every snapshot, keyed ``<generation>/<n>``. A manifest is written after
its chunks and names their offsets, so a snapshot whose writer stopped half-way is never
seen. The writer removes its previous snapshot (tombstones) once a newer one is written;
compaction, and the 30-day retention for what a stopped writer left, keep the topic to
about one snapshot per replica.

Nothing here decides what a command is: a snapshot only spares a replica reading the
ledger from the beginning. Whatever is wrong with one (missing, cut short, of another
ledger topic, another format) makes the replica read the whole ledger, as without it.
"""

from __future__ import annotations

import sys
import time
import zlib
from array import array
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bridge.commands.ledger_image import (
    FORMAT,
    TABLES,
    Chunk,
    ImageBuilder,
    LedgerImage,
    Manifest,
    UnusableSnapshot,
    check_manifest,
    decode_manifest,
    encode_manifest,
    table_chunks,
)
from bridge.commands.ledger_index import KEY_HASH
from bridge.commands.ports import DurablePublisher
from bridge.config import Config
from bridge.events import Record, Tombstone
from bridge.kafka.clients import (
    consumer_settings,
    ensure_topics,
    start_client,
    stop_client,
    topic_partitions,
)

MANIFESTS, CHUNKS = 0, 1
PARTITIONS = 2
MANIFEST_KEY = b"manifest"
# Tombstoned chunks go at the next compaction of a closed segment: close one every hour.
SNAPSHOTS_TOPIC_CONFIG = {
    "cleanup.policy": "compact,delete",
    "retention.ms": str(30 * 24 * 3600 * 1000),
    "segment.ms": str(3600 * 1000),
}
_FETCH_BYTES = 8 * 1024 * 1024


async def ensure_snapshots_topic(config: Config) -> None:
    """Create the snapshots topic if missing, with its 2 partitions and its config (the
    app creates it with the others, from the same constants)."""
    topic = config.topics.ledger_snapshots
    await ensure_topics(
        config.kafka,
        [topic],
        configs={topic: SNAPSHOTS_TOPIC_CONFIG},
        partitions={topic: PARTITIONS},
    )


def chunk_key(generation: str, n: int) -> bytes:
    return f"{generation}/{n}".encode()


@dataclass
class LedgerSnapshots:
    """Reads the latest snapshot and writes new ones."""

    config: Config
    publisher: DurablePublisher

    @property
    def topic(self) -> str:
        return self.config.topics.ledger_snapshots

    async def latest(self) -> Manifest | None:
        """The latest snapshot's manifest, checked against this bridge's settings. None
        when there is none; raises ``UnusableSnapshot`` when it cannot be loaded here."""
        async with self._consumer() as consumer:
            return await self._latest(consumer)

    async def read(self, manifest: Manifest) -> LedgerImage:
        """The image of ``manifest``; raises ``UnusableSnapshot`` when its chunks are not
        all there (a retention or compaction that removed them)."""
        async with self._consumer() as consumer:
            return await self._read(consumer, manifest)

    async def write(
        self,
        generation: str,
        steps: Iterator[tuple[array[int], ...]],
        *,
        positions: dict[int, int],
        markers: dict[int, int],
        commands: int,
    ) -> Manifest:
        """Write the chunks of the tables ``steps`` copies (``LedgerState.export_in_steps``,
        one step's copies held at a time), then the manifest (each acknowledged)."""
        chunks: list[Chunk] = []
        sizes: dict[str, int] = {}
        names = iter(TABLES)
        for step in steps:
            for table in step:
                sizes[next(names)] = len(table) * table.itemsize
                for data in table_chunks(table):
                    key = chunk_key(generation, len(chunks))
                    delivered = await self.publisher.publish_durably(
                        self.topic, Record(key=key, value=data), partition=CHUNKS
                    )
                    chunks.append(Chunk(delivered.offset, len(data), zlib.crc32(data)))
            del step
        manifest = Manifest(
            format=FORMAT,
            key_hash=KEY_HASH,
            byte_order=sys.byteorder,
            generation=generation,
            ledger_topic=self.config.topics.ledger,
            window_s=self.config.commands.idempotency_window_s,
            written_at=time.time(),
            commands=commands,
            positions=positions,
            markers=markers,
            tables=sizes,
            chunks=chunks,
        )
        await self.publisher.publish_durably(
            self.topic,
            Record(key=MANIFEST_KEY, value=encode_manifest(manifest)),
            partition=MANIFESTS,
        )
        return manifest

    async def forget(self, manifest: Manifest) -> None:
        """Tombstones for the chunks of ``manifest`` (a snapshot this replica replaced)."""
        for n in range(len(manifest.chunks)):
            await self.publisher.publish_durably(
                self.topic,
                Tombstone(chunk_key(manifest.generation, n)),
                partition=CHUNKS,
            )

    @asynccontextmanager
    async def _consumer(self) -> AsyncIterator[AIOKafkaConsumer]:
        consumer = AIOKafkaConsumer(
            **consumer_settings(self.config.kafka, group=None),
            max_partition_fetch_bytes=_FETCH_BYTES,
        )
        await start_client(consumer)
        try:
            yield consumer
        finally:
            await stop_client(consumer)

    async def partitions(self) -> int:
        """How many partitions the snapshots topic has (0: it does not exist)."""
        async with self._consumer() as consumer:
            return len(await topic_partitions(consumer, self.topic))

    async def _latest(self, consumer: AIOKafkaConsumer) -> Manifest | None:
        found = await topic_partitions(consumer, self.topic)
        if len(found) < PARTITIONS:
            if found:
                raise UnusableSnapshot(
                    f"topic {self.topic!r} has {len(found)} partition(s); snapshots need "
                    f"{PARTITIONS}"
                )
            return None
        tp = TopicPartition(self.topic, MANIFESTS)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        if end <= begin:
            return None
        consumer.seek(tp, end - 1)
        async for record in _records(consumer, tp, end):
            if record.offset == end - 1 and record.key == MANIFEST_KEY and record.value:
                manifest = decode_manifest(record.value)
                check_manifest(
                    manifest,
                    ledger_topic=self.config.topics.ledger,
                    window_s=self.config.commands.idempotency_window_s,
                )
                return manifest
        raise UnusableSnapshot(f"the last record of {self.topic} partition 0 is no manifest")

    async def _read(self, consumer: AIOKafkaConsumer, manifest: Manifest) -> LedgerImage:
        builder = ImageBuilder(manifest)
        if not manifest.chunks:
            return builder.image()
        tp = TopicPartition(self.topic, CHUNKS)
        consumer.assign([tp])
        wanted = {chunk.offset: n for n, chunk in enumerate(manifest.chunks)}
        consumer.seek(tp, manifest.chunks[0].offset)
        last = manifest.chunks[-1].offset
        async for record in _records(consumer, tp, last + 1):
            n = wanted.get(record.offset)
            if n is None:
                continue  # another snapshot's chunk, or a tombstone
            if record.key != chunk_key(manifest.generation, n) or record.value is None:
                raise UnusableSnapshot(f"chunk {n} is not at offset {record.offset}")
            builder.add(record.value)
        return builder.image()


async def _records(
    consumer: AIOKafkaConsumer, tp: TopicPartition, end: int
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The records of ``tp`` from the consumer's position up to ``end`` (exclusive). Raises
    ``UnusableSnapshot`` when the partition ends first (its last records removed)."""
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=1000)
        records = batches.get(tp, [])
        if not records:
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) >= high:
                raise UnusableSnapshot(f"{tp.topic} partition {tp.partition} ends at {high}")
            continue
        for record in records:
            if record.offset >= end:
                return
            yield record
