"""The broker dies (SIGKILL) under webhook load, and comes back on the same port with the
same storage (S3 on moto, loopback). The bridge is never restarted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.errors import PublishUnavailable
from bridge.events import Record
from bridge.kafka.clients import all_topics, ensure_topics
from bridge.kafka.embedded import EmbeddedBroker
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from tests.bridge_helpers import running_bridge
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_helpers import bridge_config
from tests.persistent_broker import persistent_broker
from tests.reliability import wait_for
from tests.reliability.webhook_load import read_events, sender

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SENDERS = 8
BEFORE_S = 2.0  # load before the kill
OUTAGE_S = 3.0  # broker dead, load goes on
AFTER_S = 3.0  # broker back, load goes on
PUBLISH_TIMEOUT_S = 2.0


async def readiness(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> list[Any]:
    """``/readyz`` every 100 ms: the moments it changed, as (time, status)."""
    changes: list[tuple[float, int]] = []
    while not stop.is_set():
        async with session.get(url + "/readyz") as answer:
            if not changes or changes[-1][1] != answer.status:
                changes.append((time.monotonic(), answer.status))
        await asyncio.sleep(0.1)
    return changes


async def test_broker_sigkill_under_webhook_load_loses_nothing_acknowledged() -> None:
    """8 senders post webhooks back to back; the broker is SIGKILLed, stays down 3 s and
    restarts. Every 2xx is in the topic exactly as sent, no 2xx is given while the broker is
    down, every 503 has Retry-After and comes within the publish timeout, and traffic
    resumes by itself."""
    config_overrides = {
        "BRIDGE_WEBHOOK_PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S),
        "BRIDGE_KAFKA_REQUEST_TIMEOUT_MS": "2000",
    }
    with persistent_broker() as broker:
        config = bridge_config(broker.bootstrap, **config_overrides)
        async with (
            running_bridge(config) as app,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            asyncio.timeout(90),
        ):
            stop, stop_probe = asyncio.Event(), asyncio.Event()
            senders = [
                asyncio.create_task(sender(n, session, app.url, stop)) for n in range(SENDERS)
            ]
            probe = asyncio.create_task(readiness(session, app.url, stop_probe))
            await asyncio.sleep(BEFORE_S)
            killed = time.monotonic()
            broker.kill()
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(broker.start)  # same port, same storage
            restarted = time.monotonic()
            await asyncio.sleep(AFTER_S)
            stop.set()
            stopped = time.monotonic()
            deliveries = [d for batch in await asyncio.gather(*senders) for d in batch]
            stop_probe.set()
            ready_changes = await probe
            assert app.bridge.publisher.connected
        acknowledged = {d.request_id: d for d in deliveries if d.acknowledged}
        events = await read_events(broker.bootstrap, config.topics.events, set(acknowledged))

    attempts = [a for d in deliveries for a in d.attempts]
    refused = [a for a in attempts if a.status == 503]
    ok = [a for a in attempts if 200 <= a.status < 300]
    # Only 204 and 503 are ever answered.
    assert {a.status for a in attempts} <= {204, 503}
    # Every delivery was acknowledged in the end (after at most a few retries).
    assert len(acknowledged) == len(deliveries)
    # Every 2xx is in the topic, exactly as sent.
    for request_id, item in acknowledged.items():
        copies = events.get(request_id)
        assert copies, f"{request_id} answered 2xx but is not in the topic"
        assert all(copy["data"]["raw"] == item.payload for copy in copies), request_id
    # No 2xx while the broker was down (allowing 0.5 s for acks already on their way).
    assert [a for a in ok if killed + 0.5 < a.answered < restarted] == []
    # The outage was felt: 503s with Retry-After, each within the publish timeout.
    assert refused, "the outage must produce 503s"
    assert all(a.retry_after == "5" for a in refused)
    assert max(a.answered - a.started for a in refused) < PUBLISH_TIMEOUT_S + 1.0
    # Traffic resumed without restarting the bridge: only 2xx in the last second.
    first_ok = min(a.answered for a in ok if a.started > restarted)
    last_refused = max(a.answered for a in refused)
    assert last_refused < stopped - 1.0
    assert all(a.status == 204 for a in attempts if a.started > stopped - 1.0)
    # Readiness followed the broker: ready, not ready, ready again.
    assert [status for _, status in ready_changes] == [200, 503, 200]
    # Copies in the topic come only from deliveries that were answered 503 at least once.
    duplicated = [i for i, copies in events.items() if len(copies) > 1]
    once_refused = {d.request_id for d in deliveries if any(a.status == 503 for a in d.attempts)}
    assert set(duplicated) <= once_refused

    during = [d for d in deliveries if any(killed <= a.started < restarted for a in d.attempts)]
    print(
        f"\nload: {len(deliveries)} deliveries, {len(attempts)} requests over "
        f"{stopped - killed + BEFORE_S:.1f}s; 204: {len(ok)}; 503: {len(refused)} "
        f"(slowest {max(a.answered - a.started for a in refused):.2f}s); deliveries touched by "
        f"the outage {len(during)}; in the topic twice {len(duplicated)}; "
        f"first 204 {first_ok - restarted:.2f}s after the restart; last 503 "
        f"{last_refused - restarted:.2f}s after it; not ready from "
        f"+{ready_changes[1][0] - killed:.2f}s after the kill to "
        f"+{ready_changes[2][0] - restarted:.2f}s after the restart"
    )


async def test_a_timed_out_publish_leaves_no_unretrieved_future_error() -> None:
    """A publish that times out while the broker is down is answered 503. The send fails
    a moment later; its error must be consumed, or asyncio prints 'Future exception was
    never retrieved' with a traceback (outside the structured logs) for every such 503
    when the future is collected."""
    sends: list[asyncio.Future[Any]] = []
    with EmbeddedBroker() as broker:
        config = bridge_config(broker.bootstrap, BRIDGE_KAFKA_REQUEST_TIMEOUT_MS="1000")
        await ensure_topics(config.kafka, [config.topics.events])
        publisher = Publisher(config.kafka, Metrics())
        await publisher.start()
        try:
            async with asyncio.timeout(10):
                await publisher.ready.wait()
            producer = publisher.producer
            assert producer is not None
            send = producer.send

            async def recording_send(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
                future: asyncio.Future[Any] = await send(*args, **kwargs)
                sends.append(future)
                return future

            producer.send = recording_send
            record = Record(key=b"k", value=b"{}")
            await publisher.publish(config.topics.events, record, timeout=5)
            broker.kill()
            with pytest.raises(PublishUnavailable):
                await publisher.publish(config.topics.events, record, timeout=0.3)
            await wait_for(sends[1].done, timeout=10, what="the send to fail")
        finally:
            await publisher.stop(timeout=1)
    # asyncio's own flag (not read through exception(), which would clear it): set while
    # the future holds an exception nobody retrieved; such a future is logged when collected.
    assert sends[1].done()
    assert not sends[1]._log_traceback


@pytest.mark.xfail(
    strict=True,
    reason="after a restart of a broker that keeps topics in memory (the embedded one), the "
    "bridge publishes without re-creating its topics first: the events topic comes back "
    "auto-created by the producer with 4 partitions instead of the configured 3, and when the "
    "outage is shorter than the 2 s health check the other topics are never re-created "
    "(bridge/kafka/publisher.py, Publisher._run)",
)
async def test_memory_broker_restart_gets_the_topics_back_before_publishing() -> None:
    """The embedded broker without storage forgets its topics on restart (records acked
    before it are gone: expected). contract.md: the bridge creates its topics and never
    relies on a broker auto-creating them. After a 1 s restart, webhooks answered 204 must
    be readable and every topic must exist again with its configured partitions."""
    with EmbeddedBroker() as broker:
        config = bridge_config(broker.bootstrap, BRIDGE_WEBHOOK_PUBLISH_TIMEOUT_S="2")
        acknowledged: set[str] = set()
        async with running_bridge(config) as app, aiohttp.ClientSession() as session:
            broker.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)  # same port, empty
            async with asyncio.timeout(60):
                for n in range(150):
                    raw, headers = delivery(channel_event(), request_id=f"after-{n}")
                    async with session.post(
                        app.url + "/webhooks/bird", data=raw, headers=headers
                    ) as answer:
                        if answer.status == 204:
                            acknowledged.add(f"after-{n}")
                    await asyncio.sleep(0.01)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        readable: set[str] = set()
        try:
            await consumer.topics()
            layout = {
                topic: sorted(consumer.partitions_for_topic(topic) or ())
                for topic in all_topics(config.topics)
            }
            events = layout[config.topics.events]
            assigned = [TopicPartition(config.topics.events, p) for p in events]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            quiet = 0
            async with asyncio.timeout(20):
                while quiet < 5:
                    batch = await consumer.getmany(timeout_ms=200)
                    quiet = 0 if batch else quiet + 1
                    for records in batch.values():
                        readable.update(orjson.loads(r.value)["id"] for r in records)
        finally:
            await consumer.stop()
    print(
        f"\nmemory broker restart: {len(acknowledged)} acknowledged after it, "
        f"{len(acknowledged - readable)} unreadable; partitions per topic {layout}"
    )
    assert len(acknowledged) > 100
    assert acknowledged <= readable
    assert layout == {topic: [0, 1, 2] for topic in all_topics(config.topics)}
