"""Snapshots of the ledger's index against the real broker: a replica that starts from one
knows every command the ledger holds (those after the snapshot too) and reads back the same
results; a snapshot that is not what it says is not used, and the replica reads the whole
ledger instead."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.commands.ledger import Ledger
from bridge.commands.ledger_image import Manifest, decode_manifest, encode_manifest
from bridge.commands.ledger_snapshots import (
    CHUNKS,
    MANIFEST_KEY,
    MANIFESTS,
    chunk_key,
    ensure_snapshots_topic,
)
from bridge.commands.ledger_state import SNAPSHOT_MARKER_PREFIX, Entry
from bridge.config import Config
from bridge.events import Record, rfc3339
from bridge.kafka.clients import consumer_settings, ensure_topics
from tests.command_helpers import ledger_of
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration


async def topics_of(config: Config) -> None:
    await ensure_topics(config.kafka, [config.topics.ledger], compacted=[config.topics.ledger])
    await ensure_snapshots_topic(config)


async def publish_manifest(ledger: Ledger, manifest: Manifest) -> None:
    """``manifest`` as the latest snapshot (a forgery, for the loader to refuse)."""
    await ledger.publisher.publish_durably(
        ledger.config.topics.ledger_snapshots,
        Record(key=MANIFEST_KEY, value=encode_manifest(manifest)),
        partition=MANIFESTS,
    )


def result(command_id: str) -> bytes:
    return orjson.dumps({"id": f"{command_id}-succeeded", "data": {"status": "succeeded"}})


async def write_commands(ledger: Ledger, ids: range) -> None:
    """Command ``c-<n>``: final for even n (connector ``k-<n>``), started for odd n."""
    now = rfc3339(datetime.now(UTC))
    for n in ids:
        started = Entry(f"c-{n}", "fp", "create", "started", now)
        await ledger.write(started)
        if n % 2 == 0:
            accepted = started.accepted({"id": f"k-{n}"}, None)
            await ledger.write(accepted)
            await ledger.write(accepted.final(result(f"c-{n}")))


async def assert_knows(ledger: Ledger, ids: range) -> None:
    for n in ids:
        entry = await ledger.get(f"c-{n}")
        assert entry is not None, f"c-{n}"
        if n % 2 == 0:
            assert entry.state == "final"
            assert await ledger.final_value(entry) == result(f"c-{n}")
            assert f"k-{n}" in ledger.claimed_connectors()
        else:
            assert entry.state == "started"
    assert await ledger.get("c-unknown") is None
    assert "k-unknown" not in ledger.claimed_connectors()


def snapshot_config(broker: Broker) -> Config:
    # The periodic writer stays quiet (a threshold no test reaches); tests write explicitly.
    return bridge_config(broker.bootstrap, BRIDGE_LEDGER_SNAPSHOT_RECORDS="1000000000")


async def test_a_replica_starts_from_the_snapshot_and_reads_what_follows(
    any_broker: Broker,
) -> None:
    config = snapshot_config(any_broker)
    await topics_of(config)
    async with ledger_of(config) as first:
        assert first.loaded_snapshot is None  # none yet: it read the ledger
        await write_commands(first, range(0, 40))
        await first.sync()
        # The gauge: every record (60 entries and the barriers) while there is no snapshot.
        assert first.records_after_snapshot() >= 60
        manifest = await first.write_snapshot()
        await write_commands(first, range(40, 50))  # after the snapshot
    assert manifest.commands == 40
    partitions = set(range(config.kafka.topic_partitions))
    assert set(manifest.positions) == set(manifest.markers) == partitions
    async with ledger_of(config) as second:
        assert second.loaded_snapshot == manifest.generation
        assert len(second.state) == 50
        await assert_knows(second, range(0, 50))


async def test_the_latest_snapshot_is_loaded_and_the_replaced_one_removed(broker: Broker) -> None:
    config = snapshot_config(broker)
    await topics_of(config)
    async with ledger_of(config) as first:
        await write_commands(first, range(0, 6))
        old = await first.write_snapshot()
        await write_commands(first, range(6, 10))
        new = await first.write_snapshot()
    records = await read_all(config, config.topics.ledger_snapshots, CHUNKS)
    tombstones = [r.key for r in records if r.value is None]
    assert tombstones == [chunk_key(old.generation, n) for n in range(len(old.chunks))]
    ledger_records = []
    for partition in old.markers:
        ledger_records += await read_all(config, config.topics.ledger, partition)
    marker = SNAPSHOT_MARKER_PREFIX + old.generation.encode()
    assert sorted(r.value is None for r in ledger_records if r.key == marker) == [False] * len(
        old.markers
    ) + [True] * len(old.markers)
    async with ledger_of(config) as second:
        assert second.loaded_snapshot == new.generation
        await assert_knows(second, range(0, 10))


@pytest.mark.parametrize(
    "forgery",
    ["a marker that is not there", "a chunk that is not what it says", "another ledger topic"],
)
async def test_a_snapshot_that_is_not_what_it_says_is_not_used(
    broker: Broker, forgery: str
) -> None:
    config = snapshot_config(broker)
    await topics_of(config)
    async with ledger_of(config) as first:
        await write_commands(first, range(0, 10))
        manifest = await first.write_snapshot()
        await write_commands(first, range(10, 12))
        if forgery == "a marker that is not there":
            markers = {p: offset + 1 for p, offset in manifest.markers.items()}
            forged = msgspec.structs.replace(manifest, markers=markers)
        elif forgery == "a chunk that is not what it says":
            chunks = [msgspec.structs.replace(c, crc32=c.crc32 ^ 1) for c in manifest.chunks]
            forged = msgspec.structs.replace(manifest, chunks=chunks)
        else:
            forged = msgspec.structs.replace(manifest, ledger_topic="another-ledger")
        await publish_manifest(first, forged)
    assert await latest_manifest(config) == forged
    async with ledger_of(config) as second:
        assert second.loaded_snapshot is None  # it read the whole ledger instead
        await assert_knows(second, range(0, 12))


async def test_without_a_snapshots_topic_the_ledger_is_read_whole(broker: Broker) -> None:
    config = snapshot_config(broker)
    await ensure_topics(config.kafka, [config.topics.ledger], compacted=[config.topics.ledger])
    async with ledger_of(config) as first:
        await write_commands(first, range(0, 4))
    async with ledger_of(config) as second:
        assert second.loaded_snapshot is None
        await assert_knows(second, range(0, 4))


async def read_all(config: Config, topic: str, partition: int) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(**consumer_settings(config.kafka, group=None))
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        records = []
        async with asyncio.timeout(15):
            while await consumer.position(tp) < end:
                records += (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
        return records
    finally:
        await consumer.stop()


async def latest_manifest(config: Config) -> Manifest:
    records = await read_all(config, config.topics.ledger_snapshots, MANIFESTS)
    return decode_manifest(records[-1].value)


async def test_replicas_write_snapshots_as_the_ledger_grows_and_replace_an_unusable_one(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic writer: a snapshot once the ledger grew by the threshold; and when the
    latest snapshot is one no replica could load (here: taken with another idempotency
    window, as after a change of BRIDGE_COMMANDS_IDEMPOTENCY_WINDOW_S), a new one."""
    monkeypatch.setattr("bridge.commands.ledger.SNAPSHOT_CHECK_S", 0.1)
    config = bridge_config(broker.bootstrap, BRIDGE_LEDGER_SNAPSHOT_RECORDS="20")
    await topics_of(config)

    async def written(ledger: Ledger, before: Manifest | None) -> Manifest:
        async with asyncio.timeout(20):
            while ledger._own_snapshot is before:
                await asyncio.sleep(0.05)
        assert ledger._own_snapshot is not None
        return ledger._own_snapshot

    async with ledger_of(config) as first:
        await write_commands(first, range(0, 10))  # 20 records, a barrier per partition
        one = await written(first, None)
        assert await latest_manifest(config) == one
        assert first.records_after_snapshot() < 20  # the gauge: dropped with the snapshot
        forged = msgspec.structs.replace(one, window_s=60.0)
        await publish_manifest(first, forged)
        await write_commands(first, range(10, 20))
        two = await written(first, one)
        assert await latest_manifest(config) == two
    assert two.window_s == config.commands.idempotency_window_s
    assert two.commands == 20
    async with ledger_of(config) as second:
        assert second.loaded_snapshot == two.generation
        await assert_knows(second, range(0, 20))
