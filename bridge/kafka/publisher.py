"""The one Kafka producer of a process: connects in the background, publishes with a deadline.

``publish`` returns only once Kafka acknowledged the record (acks=all) and raises
``PublishUnavailable`` when it cannot within the caller's deadline. I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata

from bridge.config import KafkaConfig
from bridge.deadlines import Deadlines
from bridge.errors import PublishUnavailable, RecordTooLarge
from bridge.events import Record, Tombstone
from bridge.kafka.clients import explain, producer_settings, stop_client
from bridge.kafka.size import MAX_RECORD_SIZE, size_of
from bridge.metrics import Metrics
from bridge.retry import KAFKA_BACKOFF, Retry
from bridge.tasks import stop_task

log = structlog.get_logger("bridge.kafka")

HEALTH_INTERVAL_S = 2.0


class Publisher:
    max_record_size = MAX_RECORD_SIZE  # the producer's max_request_size

    def __init__(
        self,
        kafka: KafkaConfig,
        metrics: Metrics,
        *,
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.kafka = kafka
        self.metrics = metrics
        self.on_connect = on_connect
        self.producer: AIOKafkaProducer | None = None
        self.connected = False
        self.ready = asyncio.Event()
        self._failures: dict[str, Any] = {}
        self._latency: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        # Every publish waits under a deadline; they share timers (bridge.deadlines).
        self.deadlines = Deadlines()

    async def start(self) -> None:
        """Return at once; connecting (then ``on_connect``: topic creation) retries in the back."""
        self._task = asyncio.create_task(self._run(), name="kafka-publisher")

    async def _run(self) -> None:
        retry = Retry(KAFKA_BACKOFF)
        while self.producer is None:
            producer = AIOKafkaProducer(**producer_settings(self.kafka))
            try:
                await producer.start()
                if self.on_connect is not None:
                    await self.on_connect()
            except asyncio.CancelledError:  # stopped while connecting: close what it opened
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            except Exception as exc:  # unreachable, or topics refused: say why, keep trying
                delay = retry.next_delay()
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.warning(
                    "kafka not ready, retrying",
                    error=await explain(self.kafka, exc),
                    retry_in_s=round(delay, 2),
                )
                await retry.sleep(delay)
                continue
            self.producer = producer
        self._set_connected(True)
        self.ready.set()
        log.info("kafka producer connected", bootstrap=self.kafka.bootstrap_servers)
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            try:
                async with asyncio.timeout(HEALTH_INTERVAL_S * 2):
                    await self.producer.client.fetch_all_metadata()
                    if not self.connected and self.on_connect is not None:
                        # A broker that lost its state (the embedded one keeps topics in
                        # memory) must get its topics back before anything is produced.
                        await self.on_connect()
            except (KafkaError, OSError, TimeoutError):
                self._set_connected(False)
            except Exception:  # e.g. a topic Kafka refuses to create: say so, keep watching
                log.exception("kafka health check failed")
                self._set_connected(False)
            else:
                self._set_connected(True)

    def _set_connected(self, value: bool) -> None:
        if value != self.connected:
            if not value:
                log.warning("kafka producer lost its connection")
            elif self.ready.is_set():
                log.info("kafka producer reconnected")
        self.connected = value
        self.metrics.kafka_connected.labels("producer").set(1 if value else 0)

    async def publish(
        self,
        topic: str,
        record: Record | Tombstone,
        *,
        timeout: float,
        partition: int | None = None,
        on_timeout: Callable[[asyncio.Future[RecordMetadata]], None] | None = None,
    ) -> RecordMetadata:
        """Send and wait for Kafka's acknowledgement, or raise ``PublishUnavailable``
        (``RecordTooLarge`` for a record over ``max_record_size``, or one the broker refuses
        as too large; callers check ``fits`` first where they can make it smaller).

        The deadline is ``timeout`` rounded up to the next 50 ms: concurrent publishes
        share their timers (``bridge.deadlines``).

        When the wait times out after the record entered the producer, the record may
        still be delivered: ``on_timeout`` then gets its delivery future, which settles
        later (for a caller that must know the outcome beyond its own request)."""
        if self.producer is None:
            self.failures(topic).inc()
            raise PublishUnavailable("not connected to Kafka yet")
        started = time.perf_counter()
        future: asyncio.Future[RecordMetadata] | None = None
        try:
            async with self.deadlines.after(timeout):
                future = await self.producer.send(
                    topic,
                    record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=partition,
                )
                # Each record has its own future; we wait on a waiter it settles, so the
                # deadline cancels our wait, never the delivery. Its outcome is consumed
                # either way. (asyncio.shield does the same with a task and two callbacks.)
                waiter: asyncio.Future[RecordMetadata] = future.get_loop().create_future()
                future.add_done_callback(functools.partial(_relay, waiter))
                metadata = await waiter
        except MessageSizeTooLargeError as exc:
            self.failures(topic).inc()
            raise RecordTooLarge(size=size_of(record), limit=self.max_record_size) from exc
        except (KafkaError, TimeoutError) as exc:
            self.failures(topic).inc()
            if on_timeout is not None and future is not None and not future.done():
                on_timeout(future)
            raise PublishUnavailable(f"Kafka did not acknowledge within {timeout:g}s") from exc
        self.latency(topic).observe(time.perf_counter() - started)
        return metadata

    def fits(self, record: Record) -> bool:
        """Whether the producer accepts ``record`` (the exact check aiokafka makes)."""
        return size_of(record) <= self.max_record_size

    def failures(self, topic: str) -> Any:
        return _child(self._failures, self.metrics.publish_failures, topic)

    def latency(self, topic: str) -> Any:
        return _child(self._latency, self.metrics.publish_seconds, topic)

    async def publish_durably(
        self, topic: str, record: Record | Tombstone, *, partition: int | None = None
    ) -> RecordMetadata:
        """Publish, retrying through a Kafka outage until acknowledged (or cancelled);
        ``RecordTooLarge`` is raised at once.

        For the command worker: a result must reach Kafka before its offset is committed,
        and waiting is right; the command stays uncommitted meanwhile.
        """
        retry = Retry(KAFKA_BACKOFF)
        while True:
            try:
                return await self.publish(
                    topic, record, timeout=self.kafka.request_timeout_ms / 1000, partition=partition
                )
            except PublishUnavailable as exc:
                log.warning(
                    "publish failed, retrying", topic=topic, error=repr(exc.__cause__ or exc)
                )
                await retry.wait()

    async def stop(self, timeout: float) -> None:
        """Flush what is pending and close; give up after ``timeout`` (Kafka may be down)."""
        task, self._task = self._task, None
        await stop_task(task)
        producer, self.producer = self.producer, None
        self.connected = False
        self.metrics.kafka_connected.labels("producer").set(0)
        if producer is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await stop_client(producer)
        except TimeoutError:
            log.warning(
                "kafka producer did not flush in time; pending records dropped", timeout_s=timeout
            )


def _relay(waiter: asyncio.Future[RecordMetadata], future: asyncio.Future[RecordMetadata]) -> None:
    """Hand a delivery's outcome to its waiter, if still waiting. The error is retrieved
    either way, so asyncio does not report it as never retrieved."""
    if future.cancelled():
        if not waiter.done():
            waiter.cancel()
        return
    error = future.exception()
    if waiter.done():
        return
    if error is None:
        waiter.set_result(future.result())
    else:
        waiter.set_exception(error)


def _child(cache: dict[str, Any], metric: Any, label: str) -> Any:
    """A labelled metric child, looked up once (prometheus' ``labels()`` takes a lock)."""
    child = cache.get(label)
    if child is None:
        child = cache[label] = metric.labels(label)
    return child
