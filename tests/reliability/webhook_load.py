"""Webhook load like Bird's: distinct signed deliveries back to back, each 503 retried with
the same request id and body (bounded); and reading the events topic back by id."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from bridge.kafka.clients import topic_partitions
from tests.ingest_helpers import channel_event, delivery

MAX_ATTEMPTS = 30  # per delivery; Bird retries for hours, scaled down here
RETRY_PAUSE_S = 0.2


@dataclass
class Attempt:
    started: float
    answered: float
    status: int
    retry_after: str | None


@dataclass
class Delivery:
    request_id: str
    payload: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return bool(self.attempts) and 200 <= self.attempts[-1].status < 300


async def sender(
    number: int,
    session: aiohttp.ClientSession,
    url: str,
    stop: asyncio.Event,
    *,
    prefix: str = "load",
) -> list[Delivery]:
    """Posts distinct signed webhooks back to back until ``stop``; retries each 503 like
    Bird does (same request id, same body), a bounded number of times."""
    sent: list[Delivery] = []
    while not stop.is_set():
        body = channel_event()
        item = Delivery(f"{prefix}-{number}-{len(sent)}", body["payload"])
        sent.append(item)
        raw, headers = delivery(body, request_id=item.request_id)
        for _ in range(MAX_ATTEMPTS):
            started = time.monotonic()
            async with session.post(url + "/webhooks/bird", data=raw, headers=headers) as answer:
                await answer.read()
                item.attempts.append(
                    Attempt(
                        started, time.monotonic(), answer.status, answer.headers.get("Retry-After")
                    )
                )
            if item.acknowledged:
                break
            await asyncio.sleep(RETRY_PAUSE_S)
    return sent


async def read_events(
    bootstrap: str, topic: str, wanted: set[str], timeout: float = 30
) -> dict[str, list[dict[str, Any]]]:
    """Every event of ``topic`` by id, read from the start until ``wanted`` ids are all seen
    and the log stops growing (or ``timeout``)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    events: dict[str, list[dict[str, Any]]] = {}
    try:
        partitions = await topic_partitions(consumer, topic)
        assert partitions, topic
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        quiet = 0
        async with asyncio.timeout(timeout):
            while not (wanted <= events.keys() and quiet >= 3):
                batch = await consumer.getmany(timeout_ms=300)
                quiet = 0 if batch else quiet + 1
                for records in batch.values():
                    for record in records:
                        event = orjson.loads(record.value)
                        events.setdefault(event["id"], []).append(event)
    finally:
        await consumer.stop()
    return events
