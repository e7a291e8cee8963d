"""Webhook ingest against the real embedded broker: every status of contract section 6."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from bridge.kafka.embedded import EmbeddedBroker
from tests.bridge_helpers import running_bridge
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic
from tests.persistent_broker import persistent_broker

pytestmark = pytest.mark.integration


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(url + "/webhooks/bird", data=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def test_signed_webhook_is_published_keyed_by_channel(any_broker: Broker) -> None:
    config = bridge_config(any_broker.bootstrap)
    body = channel_event("channel.created", status="pending")
    raw, headers = delivery(body, request_id="req-created-1")
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        status, _, _ = await post(session, app.url, raw, headers)
        assert status == 204
    records = await read_topic(any_broker.bootstrap, config.topics.events, expect=1)
    assert len(records) == 1
    record = records[0]
    event = orjson.loads(record.value)
    channel_id = body["payload"]["id"]
    assert record.key == channel_id.encode()
    assert dict(record.headers) == {
        "content-type": b"application/cloudevents+json",
        "correlation-id": b"req-created-1",
    }
    assert event["id"] == "req-created-1"
    assert event["type"] == "com.bird.channel.created"
    assert event["subject"] == channel_id
    assert event["data"]["status"] == "pending"
    assert event["data"]["raw"] == body["payload"]


async def test_refusals_answer_the_contract_status_and_publish_nothing(
    broker: Broker,
) -> None:
    config = bridge_config(broker.bootstrap, BRIDGE_WEBHOOK_MAX_BODY_BYTES="2048")
    good_raw, good_headers = delivery(channel_event())
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = []
    cases.append(("no signature", good_raw, {**good_headers, "messagebird-signature": ""}, 401, ""))
    bad_sig = {k: v for k, v in good_headers.items() if k != "messagebird-signature"}
    cases.append(("missing signature", good_raw, bad_sig, 401, "missing messagebird-signature"))
    wrong_key_raw, wrong_key_headers = delivery(channel_event(), key="not-the-key")
    cases.append(("wrong key", wrong_key_raw, wrong_key_headers, 401, "does not match"))
    not_json, not_json_headers = delivery(b"{not json")
    cases.append(("not json", not_json, not_json_headers, 400, "not valid JSON"))
    array, array_headers = delivery(b"[1,2,3]")
    cases.append(("not an object", array, array_headers, 400, "must be a JSON object"))
    big, big_headers = delivery(b'{"x":"' + b"a" * 4096 + b'"}')
    cases.append(("too large", big, big_headers, 413, "exceeds 2048 bytes"))
    text_headers = {**not_json_headers, "Content-Type": "text/plain"}
    cases.append(("signed text", not_json, text_headers, 400, "not valid JSON"))
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        for name, raw, headers, expected, reason in cases:
            status, _, answer = await post(session, app.url, raw, headers)
            assert status == expected, name
            assert reason in orjson.loads(answer)["error"], name

        # A chunked body over the limit is refused without a Content-Length.
        async def chunks() -> object:
            for _ in range(8):
                yield b"a" * 1024

        async with session.post(
            app.url + "/webhooks/bird", data=chunks(), headers=good_headers
        ) as response:
            assert response.status == 413
        # A good one afterwards, so the topic exists and we can see it holds only that one.
        status, _, _ = await post(session, app.url, good_raw, good_headers)
        assert status == 204
    records = await read_topic(broker.bootstrap, config.topics.events, expect=2, timeout=3)
    assert len(records) == 1


async def test_signed_json_is_published_whatever_its_content_type(broker: Broker) -> None:
    """The signature decides, not the Content-Type (contract 9); a mismatch is counted."""
    config = bridge_config(broker.bootstrap)
    sent = []
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        for content_type in ("text/plain", "application/octet-stream", None):
            raw, headers = delivery(channel_event())
            del headers["Content-Type"]
            if content_type is not None:
                headers["Content-Type"] = content_type
            # aiohttp's client adds application/octet-stream to bytes without a type:
            # skip_auto_headers sends the request with no Content-Type at all.
            async with session.post(
                app.url + "/webhooks/bird",
                data=raw,
                headers=headers,
                skip_auto_headers=["Content-Type"],
            ) as response:
                assert response.status == 204, content_type
            sent.append(headers["messagebird-request-id"])
        metrics = await (await session.get(app.url + "/metrics")).text()
    assert "bridge_webhook_content_type_mismatch_total 3.0" in metrics
    records = await read_topic(broker.bootstrap, config.topics.events, expect=3)
    assert sorted(orjson.loads(r.value)["id"] for r in records) == sorted(sent)


async def test_trace_context_is_carried_to_the_event_record(broker: Broker) -> None:
    """traceparent / tracestate go to the record's Kafka headers unchanged; an invalid
    traceparent is dropped (with its tracestate) and the webhook still published."""
    config = bridge_config(broker.bootstrap)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced_raw, traced = delivery(channel_event(), request_id="req-traced")
    traced |= {"traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE"}
    bad_raw, bad = delivery(channel_event(), request_id="req-bad-trace")
    bad |= {"traceparent": traceparent.upper(), "tracestate": "congo=t61rcWkgMzE"}
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        assert (await post(session, app.url, traced_raw, traced))[0] == 204
        assert (await post(session, app.url, bad_raw, bad))[0] == 204
    records = await read_topic(broker.bootstrap, config.topics.events, expect=2)
    headers = {orjson.loads(r.value)["id"]: dict(r.headers) for r in records}
    assert headers["req-traced"] == {
        "content-type": b"application/cloudevents+json",
        "correlation-id": b"req-traced",
        "traceparent": traceparent.encode(),
        "tracestate": b"congo=t61rcWkgMzE",
    }
    assert headers["req-bad-trace"] == {
        "content-type": b"application/cloudevents+json",
        "correlation-id": b"req-bad-trace",
    }


async def test_duplicates_are_acknowledged_but_published_once(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap)
    raw, headers = delivery(channel_event(), request_id="req-dup")
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        # Concurrent duplicates share the first publish; later ones hit the window.
        first = await asyncio.gather(*(post(session, app.url, raw, headers) for _ in range(5)))
        later = await post(session, app.url, raw, headers)
        assert [s for s, _, _ in first] == [204] * 5
        assert later[0] == 204
        metrics = await (await session.get(app.url + "/metrics")).text()
    assert "bridge_webhook_duplicates_total 5.0" in metrics
    records = await read_topic(broker.bootstrap, config.topics.events, expect=2, timeout=3)
    assert len(records) == 1


async def test_previous_signing_key_is_accepted_during_rotation(broker: Broker) -> None:
    config = bridge_config(
        broker.bootstrap,
        BRIDGE_WEBHOOK_SIGNING_KEY="new-signing-key",
        BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS="old-signing-key",
    )
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        for key, expected in (
            ("old-signing-key", 204),
            ("new-signing-key", 204),
            ("third-signing-key", 401),
        ):
            raw, headers = delivery(channel_event(), key=key)
            status, _, _ = await post(session, app.url, raw, headers)
            assert status == expected, key


async def test_health_readiness_and_metrics(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap)
    raw, headers = delivery(channel_event())
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        assert (await session.get(app.url + "/healthz")).status == 200
        assert (await session.get(app.url + "/readyz")).status == 200
        await post(session, app.url, raw, headers)
        bad_raw, bad_headers = delivery(channel_event(), key="wrong")
        await post(session, app.url, bad_raw, bad_headers)
        response = await session.get(app.url + "/metrics")
        text = await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        app.bridge.draining = True
        assert (await session.get(app.url + "/readyz")).status == 503
    assert 'bridge_webhook_requests_total{outcome="published"} 1.0' in text
    assert 'bridge_webhook_requests_total{outcome="bad_signature"} 1.0' in text
    assert "bridge_publish_seconds_bucket" in text
    assert "bridge_webhook_body_bytes_count 2.0" in text
    assert 'bridge_kafka_connected{client="producer"} 1.0' in text


async def test_inbound_rate_limit_per_client_answers_429_with_retry_after(
    broker: Broker,
) -> None:
    config = bridge_config(
        broker.bootstrap,
        BRIDGE_WEBHOOK_RATE_LIMIT_PER_S="2",
        BRIDGE_WEBHOOK_TRUST_FORWARDED_FOR="true",
    )
    deliveries = [delivery(channel_event()) for _ in range(4)]
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:

        async def send(raw: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
            status, answer_headers, _ = await post(
                session, app.url, raw, {**headers, "X-Forwarded-For": "203.0.113.7"}
            )
            return status, answer_headers.get("Retry-After")

        # All four at once: sent one after the other, a slow publish (a busy broker) lets
        # the budget refill between them and the test would measure the machine instead.
        statuses = await asyncio.gather(*(send(raw, headers) for raw, headers in deliveries))
        # Another client address has its own budget.
        raw, headers = delivery(channel_event())
        other, _, _ = await post(
            session, app.url, raw, {**headers, "X-Forwarded-For": "198.51.100.1"}
        )
    assert sorted(statuses, key=str) == [(204, None), (204, None), (429, "1"), (429, "1")]
    assert other == 204


async def test_slow_body_gets_408_and_does_not_hold_others(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap, BRIDGE_WEBHOOK_READ_TIMEOUT_S="1")
    raw, headers = delivery(channel_event())
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:

        async def trickle() -> object:
            yield raw[:10]
            await asyncio.sleep(3)
            yield raw[10:]

        async def slow() -> int:
            async with session.post(
                app.url + "/webhooks/bird", data=trickle(), headers=headers
            ) as response:
                return response.status

        slow_task = asyncio.create_task(slow())
        await asyncio.sleep(0.2)
        fast_raw, fast_headers = delivery(channel_event())
        started = time.monotonic()
        fast, _, _ = await post(session, app.url, fast_raw, fast_headers)
        assert fast == 204
        assert time.monotonic() - started < 1.0
        assert await slow_task == 408


@pytest.mark.slow
async def test_broker_outage_answers_503_and_loses_nothing_acknowledged() -> None:
    """Kill the broker mid-run: 503 + Retry-After within the bound, never a 2xx; readiness
    follows Kafka; after the broker is back, publishing resumes by itself; every request
    answered 204 is in the topic. The broker keeps its data on S3 across the kill."""
    config_overrides = {
        "BRIDGE_WEBHOOK_PUBLISH_TIMEOUT_S": "2",
        "BRIDGE_KAFKA_REQUEST_TIMEOUT_MS": "2000",
    }
    acknowledged: list[str] = []
    with persistent_broker() as broker:
        config = bridge_config(broker.bootstrap, **config_overrides)
        async with running_bridge(config) as app, aiohttp.ClientSession() as session:

            async def send(request_id: str) -> int:
                raw, headers = delivery(channel_event(), request_id=request_id)
                status, answer_headers, _ = await post(session, app.url, raw, headers)
                if status == 204:
                    acknowledged.append(request_id)
                elif status == 503:
                    assert answer_headers["Retry-After"] == "5"
                return status

            before = [await send(f"before-{i}") for i in range(20)]
            assert before == [204] * 20

            broker.kill()
            started = time.monotonic()
            during = await asyncio.gather(*(send(f"during-{i}") for i in range(10)))
            assert during == [503] * 10
            assert time.monotonic() - started < 4.0  # bounded by the publish timeout (2 s)
            async with asyncio.timeout(10):
                while (await session.get(app.url + "/readyz")).status != 503:
                    await asyncio.sleep(0.2)

            broker.start()  # same port, same storage
            async with asyncio.timeout(20):
                while (await session.get(app.url + "/readyz")).status != 200:
                    await asyncio.sleep(0.2)
            # Bird retries every 503; do the same until each is accepted.
            retried = [f"during-{i}" for i in range(10)] + [f"after-{i}" for i in range(10)]
            for request_id in retried:
                for _ in range(50):
                    if await send(request_id) == 204:
                        break
                    await asyncio.sleep(0.1)
            assert sorted(acknowledged) == sorted([f"before-{i}" for i in range(20)] + retried)
        records = await read_topic(broker.bootstrap, config.topics.events, expect=60, timeout=5)
    published = [orjson.loads(r.value)["id"] for r in records]
    assert set(acknowledged) <= set(published)
    # Nothing answered 204 is written twice; a record answered 503 may have reached Kafka
    # (the producer kept retrying) and again when Bird retried: same id, consumers dedupe.
    assert all(published.count(i) == 1 for i in acknowledged if not i.startswith("during-"))


async def deliveries_in_flight(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as answer:
        text = await answer.text()
    name = "bridge_webhook_deliveries_in_flight "
    return float(next(line for line in text.splitlines() if line.startswith(name)).split()[1])


async def test_an_outage_leaves_no_pile_of_deliveries_waiting() -> None:
    """A 503'd delivery whose record is in the producer stays in flight until Kafka
    settles it (so a retry cannot publish a second copy), but one that never got into the
    producer is given up with its request: a long outage under load must not pile up
    waiting deliveries. The producer holds at most about two batches per partition."""
    with EmbeddedBroker() as broker:
        config = bridge_config(
            broker.bootstrap,
            BRIDGE_WEBHOOK_PUBLISH_TIMEOUT_S="0.5",
            BRIDGE_KAFKA_REQUEST_TIMEOUT_MS="1000",
        )
        async with running_bridge(config) as app, aiohttp.ClientSession() as session:
            broker.kill()
            gate = asyncio.Semaphore(40)
            samples: list[float] = []

            async def send(n: int) -> int:
                async with gate:
                    raw, headers = delivery(channel_event(), request_id=f"outage-{n}")
                    status, _, _ = await post(session, app.url, raw, headers)
                    return status

            async def sample() -> None:
                while True:
                    samples.append(await deliveries_in_flight(session, app.url))
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            statuses = await asyncio.gather(*(send(n) for n in range(400)))
            sampler.cancel()
            assert set(statuses) == {503}
            # Some records waited past their 503, and never more than the producer holds.
            assert 0 < max(samples) < 100, max(samples)
            print(f"\noutage: 400 deliveries answered 503, at most {max(samples):g} in flight")
            # The producer gives those records up after its own timeouts: nothing is left.
            async with asyncio.timeout(15):
                while await deliveries_in_flight(session, app.url):
                    await asyncio.sleep(0.2)
