"""Hostile and broken HTTP against the real bridge (ingest role) and the real broker.

Requests are written byte for byte on raw sockets where a client library would tidy
them up (repeated headers, wrong Content-Length, slow bodies). Every refusal is a 4xx,
never a 5xx, and never stops the bridge from serving well-behaved Bird deliveries.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from bridge.ingest.verify import sign
from bridge.kafka.clients import topic_partitions
from tests.bridge_helpers import RunningBridge, running_bridge
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import PUBLIC_URL, SIGNING_KEY, bridge_config, read_topic

pytestmark = pytest.mark.integration

Headers = Sequence[tuple[str, str]]
TIMESTAMP = "1751742552"


@dataclass
class Answer:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def error(self) -> str:
        assert self.header("content-type") == "application/json; charset=utf-8"
        parsed = orjson.loads(self.body)
        assert isinstance(parsed, dict)
        assert list(parsed) == ["error"]
        reason = parsed["error"]
        assert isinstance(reason, str)
        return reason


def signed_headers(body: bytes, request_id: str | None = None) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("messagebird-signature", sign(SIGNING_KEY, TIMESTAMP, PUBLIC_URL, body)),
        ("messagebird-request-timestamp", TIMESTAMP),
        ("messagebird-request-id", request_id or str(uuid.uuid4())),
    ]


def http_request(
    body: bytes,
    headers: Headers,
    *,
    content_length: str | None = "auto",
    path: str = "/webhooks/bird",
    close: bool = True,
) -> bytes:
    """One request exactly as written: headers may repeat, Content-Length may lie."""
    lines = [f"POST {path} HTTP/1.1", "Host: bridge.example.org"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = Answer(status=int(status_line.split(" ")[1]))
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            answer.headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(answer.header("content-length") or 0)
    answer.body = await reader.readexactly(length)
    return answer


def host_port(app: RunningBridge) -> tuple[str, int]:
    host, port = app.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def exchange(app: RunningBridge, raw: bytes, *, timeout: float = 10) -> Answer:
    """Send raw bytes on a fresh connection and read one answer."""
    reader, writer = await asyncio.open_connection(*host_port(app))
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await read_answer(reader)
    finally:
        writer.close()


async def post(
    session: aiohttp.ClientSession, app: RunningBridge, body: bytes, headers: Headers
) -> tuple[int, float]:
    started = time.monotonic()
    async with session.post(
        app.url + "/webhooks/bird", data=body, headers=list(headers)
    ) as response:
        await response.read()
        return response.status, time.monotonic() - started


async def good_delivery(session: aiohttp.ClientSession, app: RunningBridge) -> int:
    body, headers = delivery(channel_event())
    status, _ = await post(session, app, body, list(headers.items()))
    return status


async def published_total(session: aiohttp.ClientSession, app: RunningBridge) -> float:
    """How many webhooks this bridge has published, from its own metrics."""
    async with session.get(app.url + "/metrics") as response:
        text = await response.text()
    prefix = 'bridge_webhook_requests_total{outcome="published"} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


async def published_event(app: RunningBridge, event_id: str, timeout: float = 10) -> Any:
    """The CloudEvent with this id in the bridge's events topic (read from the start)."""
    config = app.bridge.config
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, config.topics.events)
        assert partitions
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(timeout):
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        event = orjson.loads(record.value)
                        if event["id"] == event_id:
                            return event
    finally:
        await consumer.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bridge(broker: Broker) -> AsyncIterator[RunningBridge]:
    """One bridge for the tests that need only the default limits (1 MiB, 1 s to read)."""
    config = bridge_config(broker.bootstrap, BRIDGE_WEBHOOK_READ_TIMEOUT_S="1")
    async with running_bridge(config) as app:
        yield app


@pytest_asyncio.fixture(loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the module's bridge (a bridge started in a test gets its own: open
    keep-alive connections would hold up that bridge's shutdown)."""
    async with aiohttp.ClientSession() as client:
        yield client


# --- signature headers ------------------------------------------------------------------


async def test_repeated_signature_headers_are_refused_even_if_both_are_valid(
    bridge: RunningBridge,
) -> None:
    body = orjson.dumps(channel_event())
    base = signed_headers(body)
    signature = next(v for k, v in base if k == "messagebird-signature")
    cases: list[Headers] = [
        [*base, ("messagebird-signature", signature)],
        [*base, ("MessageBird-Signature", signature)],  # same header, other casing
        [*base, ("messagebird-signature", "bm90IHRoZSBzaWduYXR1cmU=")],
        [*base, ("messagebird-request-timestamp", TIMESTAMP)],
    ]
    for headers in cases:
        answer = await exchange(bridge, http_request(body, headers))
        assert answer.status == 401, headers
        assert answer.error() == "signature headers must appear once"


async def test_header_names_are_case_insensitive(bridge: RunningBridge) -> None:
    body = orjson.dumps(channel_event())
    request_id = f"cased-{uuid.uuid4()}"
    headers = [
        ("CONTENT-TYPE", "application/json"),
        ("MessageBird-Signature", sign(SIGNING_KEY, TIMESTAMP, PUBLIC_URL, body)),
        ("MESSAGEBIRD-REQUEST-TIMESTAMP", TIMESTAMP),
        ("MessageBird-Request-Id", request_id),
    ]
    answer = await exchange(bridge, http_request(body, headers))
    assert answer.status == 204
    event = await published_event(bridge, request_id)
    assert event["data"]["raw"] == orjson.loads(body)["payload"]


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        pytest.param("", "does not match", id="empty"),
        pytest.param("not base64!!", "is not base64", id="not-base64"),
        pytest.param("%%%%", "is not base64", id="percent"),
        pytest.param("éàü", "is not base64", id="non-ascii"),
        pytest.param("QUJD", "does not match", id="short-mac"),
        pytest.param("QUJDRA", "is not base64", id="missing-padding"),
        pytest.param("A" * 129, "too long", id="too-long"),
        pytest.param("A" * 5000, "too long", id="very-long"),
    ],
)
async def test_malformed_signatures_are_refused(
    bridge: RunningBridge, signature: str, reason: str
) -> None:
    body = orjson.dumps(channel_event())
    headers = [
        (k, signature if k == "messagebird-signature" else v) for k, v in signed_headers(body)
    ]
    raw = http_request(body, [(k, v.encode().decode("latin-1")) for k, v in headers])
    answer = await exchange(bridge, raw)
    assert answer.status == 401
    assert reason in answer.error()


async def test_a_signature_in_another_base64_alphabet_or_for_another_url_is_refused(
    bridge: RunningBridge,
) -> None:
    # Find a body whose signature uses '+' or '/', then send it URL-safe encoded.
    for attempt in range(200):
        body = orjson.dumps(channel_event(name=f"n{attempt}"))
        signature = sign(SIGNING_KEY, TIMESTAMP, PUBLIC_URL, body)
        if "+" in signature or "/" in signature:
            break
    assert "+" in signature or "/" in signature
    assert signature.lower() != signature
    urlsafe = signature.replace("+", "-").replace("/", "_")
    other_url = sign(SIGNING_KEY, TIMESTAMP, "http://127.0.0.1/webhooks/bird", body)
    for bad in (urlsafe, other_url, signature.lower()):
        headers = [(k, bad if k == "messagebird-signature" else v) for k, v in signed_headers(body)]
        answer = await exchange(bridge, http_request(body, headers))
        assert answer.status == 401, bad


async def test_non_utf8_bytes_in_the_timestamp_are_refused_with_401(
    bridge: RunningBridge,
) -> None:
    body = orjson.dumps(channel_event())
    headers = [
        (k, "17517425\xff" if k == "messagebird-request-timestamp" else v)
        for k, v in signed_headers(body)
    ]
    answer = await exchange(bridge, http_request(body, headers))
    assert answer.status == 401


# --- oversized headers ------------------------------------------------------------------


async def test_oversized_headers_are_refused_and_others_are_still_served(
    bridge: RunningBridge, session: aiohttp.ClientSession
) -> None:
    body = orjson.dumps(channel_event())
    cases: list[tuple[str, Headers, str]] = [
        (
            "9 KiB header value",
            [*signed_headers(body), ("X-Junk", "a" * 9 * 1024)],
            "/webhooks/bird",
        ),
        ("9 KiB header name", [*signed_headers(body), ("X" * 9 * 1024, "a")], "/webhooks/bird"),
        (
            "200 headers",
            [*signed_headers(body), *[(f"X-{i}", "v") for i in range(200)]],
            "/webhooks/bird",
        ),
        ("9 KiB path", signed_headers(body), "/webhooks/bird?" + "a" * 9 * 1024),
    ]
    for name, headers, path in cases:
        answer = await exchange(bridge, http_request(body, headers, path=path))
        assert answer.status in (400, 414, 431), name
        # The connection that sent it is unusable; everyone else is served as usual.
        assert await good_delivery(session, bridge) == 204, name
    # A large header within aiohttp's 8190-byte field limit is fine.
    answer = await exchange(
        bridge, http_request(body, [*signed_headers(body), ("X-Big", "b" * 8000)])
    )
    assert answer.status == 204


# --- nesting and body size ----------------------------------------------------------------


def nested_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


async def test_deeply_nested_json_is_refused_and_reasonable_nesting_is_published(
    bridge: RunningBridge,
) -> None:
    brackets = b"[" * 100_000
    answer = await exchange(bridge, http_request(brackets, signed_headers(brackets)))
    assert answer.status == 400
    assert "not valid JSON" in answer.error()

    braces = b'{"payload":' + b'{"a":' * 100_000
    answer = await exchange(bridge, http_request(braces, signed_headers(braces)))
    assert answer.status == 400

    within = b'{"service":"channels","event":"channel.updated","payload":' + nested_object(100)
    within += b"}"
    request_id = f"nested-{uuid.uuid4()}"
    answer = await exchange(bridge, http_request(within, signed_headers(within, request_id)))
    assert answer.status == 204
    event = await published_event(bridge, request_id)
    assert event["data"]["raw"] == orjson.loads(nested_object(100))


async def test_json_nested_beyond_what_can_be_republished_is_refused_with_400(
    bridge: RunningBridge,
) -> None:
    body = b'{"payload":' + nested_object(500) + b"}"
    answer = await exchange(bridge, http_request(body, signed_headers(body)))
    assert answer.status == 400
    assert answer.error() == "body nests too deeply to be published"


def json_of_size(size: int) -> bytes:
    """A channel event of exactly ``size`` bytes."""
    head = b'{"service":"channels","event":"channel.updated","payload":{"id":"c-1","pad":"'
    tail = b'"}}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


async def test_a_body_of_exactly_the_limit_is_taken_one_byte_more_is_413(
    broker: Broker,
) -> None:
    config = bridge_config(broker.bootstrap, BRIDGE_WEBHOOK_MAX_BODY_BYTES="4096")
    exact, over = json_of_size(4096), json_of_size(4097)
    assert (len(exact), len(over)) == (4096, 4097)

    async def chunked(body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        answer = await exchange(app, http_request(exact, signed_headers(exact)))
        assert answer.status == 204
        answer = await exchange(app, http_request(over, signed_headers(over)))
        assert answer.status == 413
        assert answer.error() == "body of 4097 bytes exceeds 4096 bytes"
        # Without a Content-Length (chunked), the same limit, counted as it arrives.
        for body, expected in ((exact, 204), (over, 413)):
            headers = dict(signed_headers(body))
            async with session.post(
                app.url + "/webhooks/bird", data=chunked(body), headers=headers
            ) as response:
                assert response.status == expected
                assert "Content-Length" not in response.request_info.headers
        # A Content-Length over the limit is refused before the body is sent at all.
        answer = await exchange(
            app, http_request(b"", signed_headers(b""), content_length=str(10**12))
        )
        assert answer.status == 413


async def test_a_body_whose_event_exceeds_kafkas_limit_is_refused_with_413(
    broker: Broker,
) -> None:
    config = bridge_config(broker.bootstrap)
    body = json_of_size(config.webhook.max_body_bytes)
    async with running_bridge(config) as app:
        answer = await exchange(app, http_request(body, signed_headers(body)))
    # Within the body limit, but the event around it is over Kafka's record limit:
    # a clear 413 at once, not a 503 that Bird would retry for hours.
    assert answer.status == 413
    assert "record size limit" in answer.error()


# --- lying or malformed framing -------------------------------------------------------------


async def test_wrong_content_length_never_publishes_a_forged_body(
    bridge: RunningBridge, session: aiohttp.ClientSession
) -> None:
    body = orjson.dumps(channel_event())
    headers = signed_headers(body)
    published = await published_total(session, bridge)
    # Shorter than the signed body: the prefix the bridge reads is not what was signed.
    short = http_request(body[:-5], headers, content_length=str(len(body) - 5))
    answer = await exchange(bridge, short)
    assert answer.status == 401
    assert answer.error() == "signature does not match"
    # ... and when the rest follows anyway, the HTTP parser refuses the trailing bytes.
    answer = await exchange(bridge, http_request(body, headers, content_length=str(len(body) - 5)))
    assert answer.status == 400
    # Longer than the body, connection left open: the read deadline answers.
    started = time.monotonic()
    answer = await exchange(
        bridge, http_request(body, headers, content_length=str(len(body) + 100))
    )
    assert answer.status == 408
    assert answer.error() == "body not received within 1s"
    assert 0.9 <= time.monotonic() - started < 5
    # Not a number, negative, or two different values: the HTTP parser refuses it.
    for value in ("abc", "-1", "1e3", f"{len(body)}, {len(body) + 1}"):
        answer = await exchange(bridge, http_request(body, headers, content_length=value))
        assert answer.status == 400, value
    # Content-Length together with chunked Transfer-Encoding (request smuggling).
    smuggled = http_request(body, [*headers, ("Transfer-Encoding", "chunked")])
    answer = await exchange(bridge, smuggled)
    assert answer.status == 400
    assert await published_total(session, bridge) == published
    assert await good_delivery(session, bridge) == 204
    assert await published_total(session, bridge) == published + 1


# --- slow and many clients --------------------------------------------------------------------


async def trickle(app: RunningBridge, body: bytes) -> tuple[int, float]:
    """Send the headers and a first byte, then one byte every 0.1 s until answered."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*host_port(app))
    try:
        raw = http_request(body, signed_headers(body), close=False)
        writer.write(raw[: len(raw) - len(body) + 1])
        await writer.drain()
        answer = asyncio.create_task(read_answer(reader))
        for i in range(1, min(len(body), 100)):
            done, _ = await asyncio.wait([answer], timeout=0.1)
            if done:
                break
            try:
                writer.write(body[i : i + 1])
                await writer.drain()
            except ConnectionError:
                break
        async with asyncio.timeout(10):
            result = await answer
        return result.status, time.monotonic() - started
    finally:
        writer.close()


async def test_slow_bodies_get_408_while_others_are_served_quickly(
    bridge: RunningBridge, session: aiohttp.ClientSession
) -> None:
    slow_body = orjson.dumps(channel_event())
    slow = [asyncio.create_task(trickle(bridge, slow_body)) for _ in range(50)]
    await asyncio.sleep(0.2)
    fast = []
    for _ in range(20):
        body, headers = delivery(channel_event())
        fast.append(await post(session, bridge, body, list(headers.items())))
    slow_results = await asyncio.gather(*slow)
    assert all(status == 204 for status, _ in fast)
    assert max(elapsed for _, elapsed in fast) < 0.9  # never waits for the slow ones
    assert [status for status, _ in slow_results] == [408] * 50
    # The read deadline (1 s) counts from the start: trickling a byte at a time does not
    # extend it.
    assert all(0.9 <= elapsed < 4 for _, elapsed in slow_results)


async def test_hundreds_of_concurrent_deliveries_are_all_published(
    broker: Broker,
) -> None:
    config = bridge_config(broker.bootstrap)
    deliveries = [delivery(channel_event(), request_id=f"many-{i}") for i in range(300)]
    async with (
        running_bridge(config) as app,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as client,
    ):
        results = await asyncio.gather(
            *(post(client, app, body, list(headers.items())) for body, headers in deliveries)
        )
    assert [status for status, _ in results] == [204] * 300
    records = await read_topic(broker.bootstrap, config.topics.events, expect=300)
    ids = [orjson.loads(r.value)["id"] for r in records]
    assert sorted(ids) == sorted(f"many-{i}" for i in range(300))


# --- inbound rate limit -----------------------------------------------------------------------


async def test_the_inbound_rate_limit_answers_429_with_retry_after(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap, BRIDGE_WEBHOOK_RATE_LIMIT_PER_S="1")
    async with running_bridge(config) as app, aiohttp.ClientSession() as session:
        first = orjson.dumps(channel_event())
        started = time.monotonic()
        assert (await exchange(app, http_request(first, signed_headers(first)))).status == 204
        # Unsigned requests are limited too, before any signature work is done.
        unsigned = await exchange(app, http_request(b"{}", [("Content-Type", "application/json")]))
        assert unsigned.status == 429
        answers = [unsigned]
        for i in range(8):
            body = orjson.dumps(channel_event())
            # X-Forwarded-For is not trusted by default: a forged one changes nothing.
            headers = [*signed_headers(body), ("X-Forwarded-For", f"192.0.2.{i}")]
            answers.append(await exchange(app, http_request(body, headers)))
        elapsed = time.monotonic() - started
        statuses = [a.status for a in answers]
        # No more than what refilled at one per second.
        assert statuses.count(204) <= math.floor(elapsed)
        assert set(statuses) <= {204, 429}
        for answer in answers:
            if answer.status == 429:
                assert answer.header("retry-after") == "1"
                assert answer.error() == "rate limit exceeded; retry after 1s"
        # After Retry-After, the client is served again.
        await asyncio.sleep(1.0)
        assert await good_delivery(session, app) == 204
        metrics = await (await session.get(app.url + "/metrics")).text()
    assert 'bridge_webhook_requests_total{outcome="too_many_requests"}' in metrics


async def test_a_forged_forwarded_for_behind_an_appending_proxy_does_not_escape_the_limit(
    broker: Broker,
) -> None:
    config = bridge_config(
        broker.bootstrap,
        BRIDGE_WEBHOOK_RATE_LIMIT_PER_S="2",
        BRIDGE_WEBHOOK_TRUST_FORWARDED_FOR="true",
    )
    async with running_bridge(config) as app:
        statuses = []
        for i in range(6):
            body = orjson.dumps(channel_event())
            # What nginx ($proxy_add_x_forwarded_for) or a cloud load balancer forwards
            # when the client at 203.0.113.7 sent "X-Forwarded-For: 10.0.0.<i>".
            headers = [*signed_headers(body), ("X-Forwarded-For", f"10.0.0.{i}, 203.0.113.7")]
            statuses.append((await exchange(app, http_request(body, headers))).status)
    assert statuses.count(429) >= 3
