"""Concurrent publishes share their deadline timers (one per slot, not one per publish)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.events import Record
from bridge.kafka.clients import ensure_topics
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic

pytestmark = pytest.mark.integration


def record(n: int) -> Record:
    return Record(key=f"channel-{n % 7}".encode(), value=b'{"n": %d}' % n, headers=())


async def test_concurrent_publishes_share_deadline_timers(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap)
    topic = config.topics.events
    await ensure_topics(config.kafka, [topic])
    publisher = Publisher(config.kafka, Metrics())
    await publisher.start()
    try:
        async with asyncio.timeout(30):
            await publisher.ready.wait()
        loop = asyncio.get_running_loop()
        made: list[Any] = []
        original = loop.call_at

        def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            made.append(getattr(callback, "__qualname__", repr(callback)))
            return original(when, callback, *args, **kwargs)

        loop.call_at = call_at  # type: ignore[method-assign,assignment]
        try:
            sent = await asyncio.gather(
                *(publisher.publish(topic, record(n), timeout=10) for n in range(300))
            )
        finally:
            del loop.call_at
        # One timer per publish (asyncio.timeout) before; now one per 50 ms slot.
        ours = [name for name in made if name.startswith("Deadlines.")]
        assert 1 <= len(ours) <= 10, made
        assert len(sent) == 300
    finally:
        await publisher.stop(timeout=5)
    records = await read_topic(broker.bootstrap, topic, expect=300)
    assert sorted(r.value for r in records) == sorted(record(n).value for n in range(300))
