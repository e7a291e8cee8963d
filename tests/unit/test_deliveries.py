"""Delivery bookkeeping (bridge.ingest.deliveries): each delivery published once.

The publish function here keeps the publisher's contract (acknowledged, refused, or gave up
waiting with the record still in the producer) with futures the test settles by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.errors import PublishUnavailable
from bridge.events import Record
from bridge.ingest.dedupe import DedupeWindow
from bridge.ingest.deliveries import Deliveries, OnTimeout

RECORD = Record(key=b"k", value=b"{}")


class Producer:
    """Each publish waits for the test to acknowledge, refuse, or time it out."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[str]] = []
        self.in_producer: list[asyncio.Future[Any]] = []

    async def publish(self, record: Record, on_timeout: OnTimeout) -> None:
        assert record is RECORD
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.sent.append(answer)
        match await answer:
            case "ack":
                return
            case "refused":
                raise PublishUnavailable("no broker")
            case "timeout":  # gave up waiting; the record is still in the producer
                delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self.in_producer.append(delivery)
                on_timeout(delivery)
                raise PublishUnavailable("timed out")

    async def answer(self, with_: str) -> None:
        """Answer the oldest unanswered publish (waiting for one to be sent)."""
        while not (waiting := [answer for answer in self.sent if not answer.done()]):
            await asyncio.sleep(0)
        waiting[0].set_result(with_)
        await asyncio.sleep(0)


def deliveries(producer: Producer, duplicates: list[str], **kw: float) -> Deliveries:
    return Deliveries(
        producer.publish,
        DedupeWindow(max_entries=100, ttl_s=60),
        wait_timeout_s=kw.get("wait_timeout_s", 5),
        settle_timeout_s=kw.get("settle_timeout_s", 5),
        on_duplicate=lambda: duplicates.append("d"),
    )


async def test_published_once_then_duplicate() -> None:
    producer, duplicates = Producer(), list[str]()
    book = deliveries(producer, duplicates)
    first = asyncio.create_task(book.publish_once("e1", RECORD))
    await producer.answer("ack")
    assert await first == "published"
    assert await book.publish_once("e1", RECORD) == "duplicate"
    assert (len(producer.sent), duplicates, len(book)) == (1, ["d"], 0)


async def test_a_concurrent_duplicate_waits_for_the_first_publish() -> None:
    producer, duplicates = Producer(), list[str]()
    book = deliveries(producer, duplicates)
    first = asyncio.create_task(book.publish_once("e1", RECORD))
    await asyncio.sleep(0)
    second = asyncio.create_task(book.publish_once("e1", RECORD))
    await asyncio.sleep(0)
    assert len(book) == 1
    assert not second.done()
    await producer.answer("ack")
    assert (await first, await second) == ("published", "duplicate")
    assert len(producer.sent) == 1


async def test_a_refused_publish_is_forgotten_so_the_retry_publishes() -> None:
    producer, duplicates = Producer(), list[str]()
    book = deliveries(producer, duplicates)
    first = asyncio.create_task(book.publish_once("e1", RECORD))
    waiting = asyncio.create_task(book.publish_once("e1", RECORD))
    await producer.answer("refused")
    with pytest.raises(PublishUnavailable):
        await first
    with pytest.raises(PublishUnavailable, match="could not be published"):
        await waiting
    retry = asyncio.create_task(book.publish_once("e1", RECORD))
    await producer.answer("ack")
    assert await retry == "published"
    assert (len(producer.sent), duplicates, len(book)) == (2, [], 0)


async def test_a_timed_out_record_stays_in_flight_until_kafka_settles_it() -> None:
    producer, duplicates = Producer(), list[str]()
    book = deliveries(producer, duplicates)
    first = asyncio.create_task(book.publish_once("e1", RECORD))
    await producer.answer("timeout")
    with pytest.raises(PublishUnavailable, match="timed out"):
        await first
    assert len(book) == 1  # the record may still arrive: a retry must not send another
    retry = asyncio.create_task(book.publish_once("e1", RECORD))
    await asyncio.sleep(0)
    assert not retry.done()
    producer.in_producer[0].set_result(None)  # Kafka acknowledged it after all
    assert await retry == "duplicate"
    assert (len(producer.sent), len(book)) == (1, 0)


async def test_a_timed_out_record_is_given_up_after_the_settle_bound() -> None:
    producer, duplicates = Producer(), list[str]()
    book = deliveries(producer, duplicates, settle_timeout_s=0.05)
    first = asyncio.create_task(book.publish_once("e1", RECORD))
    await producer.answer("timeout")
    with pytest.raises(PublishUnavailable):
        await first
    await asyncio.sleep(0.1)
    assert len(book) == 0
    retry = asyncio.create_task(book.publish_once("e1", RECORD))
    await producer.answer("ack")
    assert await retry == "published"
    assert len(producer.sent) == 2


async def test_a_duplicate_gives_up_waiting_after_its_own_deadline() -> None:
    producer, duplicates = Producer(), list[str]()
    book = deliveries(producer, duplicates, wait_timeout_s=0.05)
    first = asyncio.create_task(book.publish_once("e1", RECORD))
    await asyncio.sleep(0)
    with pytest.raises(PublishUnavailable, match="still on its way"):
        await book.publish_once("e1", RECORD)
    await producer.answer("ack")
    assert await first == "published"
