"""librdkafka (PyPI ``confluent-kafka``) behind the one call the baselines make: publish a
record and wait for Kafka's acknowledgement. For ``bench.servers``' ``*-rdkafka`` handlers:
the same work as their aiokafka twins, with another Kafka client, to measure what a
client written in C would change.

``produce`` runs in the event loop's thread and never waits: librdkafka queues the
record, and its own threads (C, outside the GIL) batch, send and read the answers. One
Python thread serves the delivery reports (``poll``) and hands each round of them to the
event loop in one ``call_soon_threadsafe``, not one per record.

The settings are the baselines' (``bench.servers.baseline_producer``): acks=all, no
idempotence, the bridge's linger, and keys partitioned by murmur2 as the bridge and
Java's clients do (librdkafka's default is CRC32).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import confluent_kafka

# How long one ``poll`` waits for reports before it checks whether to stop.
POLL_S = 0.1

Report = tuple["asyncio.Future[None]", "confluent_kafka.KafkaError | None"]


class RdkafkaProducer:
    """``send_and_wait`` on librdkafka; ``start``/``stop`` on the running event loop."""

    def __init__(self, bootstrap: str, linger_ms: int) -> None:
        self.settings = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": linger_ms,
            "partitioner": "murmur2_random",
        }
        self.producer: confluent_kafka.Producer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reports: list[Report] = []
        self.stopping = threading.Event()
        self.poller = threading.Thread(target=self._poll, name="rdkafka-reports", daemon=True)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.producer = confluent_kafka.Producer(self.settings)
        # Connected once the broker answers a metadata request (list_topics waits for it).
        connected = functools.partial(self.producer.list_topics, timeout=10)
        await self.loop.run_in_executor(None, connected)
        self.poller.start()

    async def stop(self) -> None:
        assert self.loop is not None
        assert self.producer is not None
        await self.loop.run_in_executor(None, self.producer.flush, 10)
        self.stopping.set()
        await self.loop.run_in_executor(None, self.poller.join)
        _settle(self.reports)  # reports flush served after the poller's last round

    async def send_and_wait(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Publish one record; return once Kafka acknowledged it (raise its error else)."""
        assert self.loop is not None
        assert self.producer is not None
        delivered: asyncio.Future[None] = self.loop.create_future()
        sent: list[tuple[str, str | bytes | None]] | None = (
            list(headers) if headers is not None else None
        )
        self.producer.produce(
            topic,
            value,
            key,
            headers=sent,
            on_delivery=functools.partial(self._delivered, delivered),
        )
        await delivered

    def _delivered(
        self, future: asyncio.Future[None], error: confluent_kafka.KafkaError | None, _msg: Any
    ) -> None:
        # On the poller's thread, inside poll(): only collect; the loop settles them.
        self.reports.append((future, error))

    def _poll(self) -> None:
        assert self.loop is not None
        assert self.producer is not None
        while not self.stopping.is_set():
            self.producer.poll(POLL_S)
            if self.reports:
                reports, self.reports = self.reports, []
                self.loop.call_soon_threadsafe(_settle, reports)


def _settle(reports: list[Report]) -> None:
    for future, error in reports:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(confluent_kafka.KafkaException(error))
