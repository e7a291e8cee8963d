"""Know every channel's status from ``bird.channel-state``, then follow ``bird.channel-events``.

A consumer's bootstrap (docs/channel-state.md). Needs only aiokafka:

    python docs/examples/channel_status.py 127.0.0.1:9092

1. Read the state topic from the beginning to its end, keeping the last record per key.
2. Follow the events topic, applying the same rule as the bridge: a later ``updatedAt``
   (or the same one with another status) replaces what is known; an older one does not.

Step 2 reads the events topic in a consumer group of its own, from its committed offsets
(the first time from the beginning: events older than the state are skipped by the rule).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

STATE_TOPIC = "bird.channel-state"
EVENTS_TOPIC = "bird.channel-events"
CHANNEL_EVENTS = ("com.bird.channel.created", "com.bird.channel.updated")


def newer(known: dict[str, Any] | None, data: dict[str, Any]) -> bool:
    """The bridge's rule: does ``data`` move the channel forward?"""
    if known is None:
        return True
    try:
        new = datetime.fromisoformat(data["updatedAt"])
        old = datetime.fromisoformat(known["updatedAt"])
    except (KeyError, TypeError, ValueError):
        return False
    return new > old or (new == old and data.get("status") != known.get("status"))


async def read_state(bootstrap: str, topic: str = STATE_TOPIC) -> dict[str, dict[str, Any]]:
    """Every channel's latest state: the state topic read to its end."""
    # No group: the consumer is given every partition of the topic, and commits nothing.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110 (aiokafka has no event for it)
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        state: dict[str, dict[str, Any]] = {}
        pending = set(partitions)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            # The end is the high watermark a fetch reports (end_offsets() works on Kafka
            # too, but not on the embedded development broker).
            for tp in list(pending):
                end = consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    pending.discard(tp)
            for records in batches.values():
                for record in records:
                    key = record.key.decode()
                    if record.value is None:  # a tombstone: the channel is gone
                        state.pop(key, None)
                    else:
                        state[key] = json.loads(record.value)["data"]
        return state
    finally:
        await consumer.stop()


async def follow(
    bootstrap: str, state: dict[str, dict[str, Any]], group: str, topic: str = EVENTS_TOPIC
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield (channel id, data) for every event that moves a channel forward."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async for record in consumer:
            event = json.loads(record.value)
            channel_id = event.get("subject")
            if not channel_id or event.get("type") not in CHANNEL_EVENTS:
                continue
            if newer(state.get(channel_id), event["data"]):
                state[channel_id] = event["data"]
                yield channel_id, event["data"]
    finally:
        await consumer.stop()


async def main(bootstrap: str) -> None:
    state = await read_state(bootstrap)
    for channel_id, data in sorted(state.items()):
        print(f"{channel_id} {data.get('status')} (as of {data.get('updatedAt')})")
    async for channel_id, data in follow(bootstrap, state, group="channel-status-example"):
        print(f"{channel_id} -> {data.get('status')} (as of {data.get('updatedAt')})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"))
