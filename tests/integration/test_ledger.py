"""The ledger against the real broker: a finished command is kept as its place in the topic,
and its result is read back from there, byte for byte, also by a replica that just started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
import pytest

from bridge.commands.ledger import Ledger
from bridge.commands.ledger_state import Entry
from bridge.config import Config
from bridge.errors import LedgerRecordMissing
from bridge.events import rfc3339
from bridge.kafka.clients import ensure_topics
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration

CONNECTOR = {"id": "k-1", "name": "Support SMS", "arguments": {"from": "+31600000000"}}


def result(command_id: str, status: str) -> bytes:
    # Floats, unicode and nesting: the bytes read back must equal the bytes published.
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"{command_id}-{status}",
            "subject": command_id,
            "data": {"status": status, "connector": CONNECTOR, "score": 0.1, "note": "café ☕"},
        }
    )


@asynccontextmanager
async def ledger_of(config: Config) -> AsyncIterator[Ledger]:
    publisher = Publisher(config.kafka, Metrics())
    await publisher.start()
    ledger = Ledger(config, publisher)
    try:
        async with asyncio.timeout(15):
            await publisher.ready.wait()
            await ledger.start()
        yield ledger
    finally:
        await ledger.stop()
        await publisher.stop(timeout=5)


async def test_a_finished_command_is_read_back_byte_for_byte(any_broker: Broker) -> None:
    config = bridge_config(any_broker.bootstrap)
    await ensure_topics(config.kafka, [config.topics.ledger], compacted=[config.topics.ledger])
    started = Entry("c-1", "fp", "create", "started", rfc3339(datetime.now(UTC)))
    final = started.accepted(CONNECTOR, result("c-1", "accepted")).final(result("c-1", "succeeded"))
    published = final.final_result
    async with ledger_of(config) as first:
        for entry in (started, final.accepted(CONNECTOR, result("c-1", "accepted")), final):
            await first.write(entry)
        kept = first.get("c-1")
        assert kept is not None
        assert kept.final_result is None
        assert kept.position is not None
        assert await first.final_value(kept) == published
    async with ledger_of(config) as restarted:  # another replica, reading the topic
        kept = restarted.get("c-1")
        assert kept is not None
        assert kept.state == "final"
        assert kept.final_result is None
        assert kept.connector_id == "k-1"
        assert await restarted.final_value(kept) == published


async def test_a_record_that_is_gone_is_said_so(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap)
    await ensure_topics(config.kafka, [config.topics.ledger], compacted=[config.topics.ledger])
    async with ledger_of(config) as ledger:
        final = Entry("c-2", "fp", "get", "final", rfc3339(datetime.now(UTC)))
        # Points past the end of the partition: nothing with this key will come.
        with pytest.raises(LedgerRecordMissing, match="partition 0"):
            await ledger.final_value(final.compact((0, 10_000)))
