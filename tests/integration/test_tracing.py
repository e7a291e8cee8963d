"""One trace from a webhook to its record, and from a command record through Bird to its
results (contract sections 9 and 13), on the real broker and the Bird simulator, with the
OpenTelemetry SDK's in-memory exporter standing in for an OTLP collector."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bench.otlp_sink import OtlpSink
from birdsim.server import SimulatorServer
from bridge.config import Config, Role
from bridge.tracecontext import TraceContext, from_kafka_headers
from bridge.tracing import Tracing, tracing_from_env
from tests.bridge_helpers import RunningBridge, running_bridge
from tests.command_helpers import (
    CommandClient,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    simulator_json,
)
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = TraceContext(TRACEPARENT, "congo=t61rcWkgMzE")
TRACE_ID = int(TRACE.trace_id, 16)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def exporting(exporter: InMemorySpanExporter) -> Tracing:
    return Tracing.with_processor(SimpleSpanProcessor(exporter))


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent is not None else None


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def post_webhook(url: str, raw: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/webhooks/bird", data=raw, headers=headers) as response,
    ):
        return response.status


@dataclass
class Stack:
    config: Config
    simulator: SimulatorServer
    bridge: RunningBridge
    client: CommandClient

    async def bird_requests(self, trace_id: str) -> list[dict[str, Any]]:
        found = await simulator_json(
            self.simulator.url, "GET", f"/_simulator/requests?traceId={trace_id}"
        )
        return list(found["results"])


@asynccontextmanager
async def stack(
    broker: Broker, tracing: Tracing, roles: tuple[Role, ...] = ("commands",)
) -> AsyncIterator[Stack]:
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        async with (
            running_bridge(config, roles, tracing=tracing) as app,
            command_client(config) as client,
        ):
            yield Stack(config, simulator, app, client)
    finally:
        await simulator.stop()


async def test_a_webhooks_trace_goes_on_in_its_record_through_the_delivery_span(
    broker: Broker, exporter: InMemorySpanExporter
) -> None:
    config = bridge_config(broker.bootstrap)
    raw, headers = delivery(channel_event(), request_id="req-traced")
    headers |= TRACE.http_headers()
    async with running_bridge(config, tracing=exporting(exporter)) as app:
        assert await post_webhook(app.url, raw, headers) == 204
    (record,) = await read_topic(broker.bootstrap, config.topics.events, expect=1)
    carried = from_kafka_headers(record.headers)
    assert carried is not None
    (server,) = exporter.get_finished_spans()
    assert server.kind is SpanKind.SERVER
    assert server.name == "POST /webhooks/bird"
    assert server.context is not None
    assert server.context.trace_id == TRACE_ID
    assert parent_id(server) == TRACE.parent_id  # the caller's span
    # The record continues the same trace, from the delivery's span.
    assert carried.trace_id == TRACE.trace_id
    assert carried.parent_id == span_id(server)
    assert carried.tracestate == TRACE.tracestate
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 204
    assert server.attributes["http.route"] == "/webhooks/bird"
    assert [e.name for e in server.events] == ["verified", "published"]
    # No secret reaches a span: not the signature, not the body.
    text = server.to_json()
    assert headers["messagebird-signature"] not in text
    assert "payload" not in text


async def test_a_refused_webhook_is_an_error_span_of_the_callers_trace(
    broker: Broker, exporter: InMemorySpanExporter
) -> None:
    config = bridge_config(broker.bootstrap)
    raw, headers = delivery(channel_event())
    headers |= {"messagebird-signature": "bm90IGEgc2lnbmF0dXJl"} | TRACE.http_headers()
    async with running_bridge(config, tracing=exporting(exporter)) as app:
        assert await post_webhook(app.url, raw, headers) == 401
    (server,) = exporter.get_finished_spans()
    assert server.context is not None
    assert server.context.trace_id == TRACE_ID
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["error.type"] == "bad_signature"
    assert server.events == ()


async def test_a_commands_trace_reaches_every_bird_request_and_result(
    broker: Broker, exporter: InMemorySpanExporter
) -> None:
    async with stack(broker, exporting(exporter)) as s:
        command = create_command()
        command_id = command["commandId"]
        await s.client.send(command, headers=TRACE.http_headers())
        final = await s.client.final(command_id)
        assert final["data"]["status"] == "succeeded"
        requests = await s.bird_requests(TRACE.trace_id)
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans if s.context} == {TRACE_ID}
    (consumer,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert parent_id(consumer) == TRACE.parent_id  # the producer's span
    assert consumer.attributes is not None
    assert consumer.attributes["bridge.command_id"] == command_id
    assert consumer.attributes["bridge.outcome"] == "succeeded"
    ledger = named(spans, "ledger write")
    assert len(ledger) == 3  # started, accepted, final
    bird = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert {parent_id(s) for s in [*ledger, *bird]} == {span_id(consumer)}
    # Bird saw every request of the command, the follow-up polls included, each naming
    # its client span as parent.
    assert [r["method"] for r in requests][:1] == ["POST"]
    assert len(requests) >= 2
    assert {r["traceparent"][36:52] for r in requests} == {span_id(s) for s in bird}
    assert {r["tracestate"] for r in requests} == {TRACE.tracestate}
    assert {s.name for s in bird} >= {"POST create_connector", "GET get_channel"}
    for client in bird:
        assert client.attributes is not None
        assert "AccessKey" not in client.to_json()
    # Both results carry the trace, each from its publishing span.
    results = s.client.results.headers[command_id]
    assert len(results) == 2
    carried = [from_kafka_headers(h.items()) for h in results]
    publishes = named(spans, f"publish {s.config.topics.results}")
    assert {c.trace_id for c in carried if c} == {TRACE.trace_id}
    assert [c.parent_id if c else None for c in carried] == [span_id(p) for p in publishes]


async def test_without_export_the_records_context_is_passed_on_as_is(broker: Broker) -> None:
    """Propagation only: Bird requests and results carry the record's own traceparent;
    an invalid command's failed result too, and its dead letter keeps the record's headers."""
    async with stack(broker, Tracing()) as s:
        command = {"commandId": f"list-{uuid.uuid4()}", "action": "list"}
        await s.client.send(command, headers=TRACE.http_headers())
        assert (await s.client.final(command["commandId"]))["data"]["status"] == "succeeded"
        invalid = {"commandId": f"bad-{uuid.uuid4()}", "action": "update"}
        await s.client.send(invalid, headers={**TRACE.http_headers(), "x-origin": "test"})
        assert (await s.client.final(invalid["commandId"]))["data"]["status"] == "failed"
        requests = await s.bird_requests(TRACE.trace_id)
        dead = await read_topic(broker.bootstrap, s.config.topics.dead_letter, expect=1)
    assert [(r["traceparent"], r["tracestate"]) for r in requests] == [
        (TRACE.traceparent, TRACE.tracestate)
    ]
    for command_id in (command["commandId"], invalid["commandId"]):
        (headers,) = s.client.results.headers[command_id]
        assert headers["traceparent"] == TRACE.traceparent.encode()
        assert headers["tracestate"] == b"congo=t61rcWkgMzE"
    (letter,) = dead
    kept = dict(letter.headers)
    assert kept["traceparent"] == TRACE.traceparent.encode()
    assert kept["tracestate"] == b"congo=t61rcWkgMzE"
    assert kept["x-origin"] == b"test"
    assert orjson.loads(letter.value) == invalid


async def test_one_trace_from_a_webhook_through_kafka_and_bird_to_the_results(
    broker: Broker, exporter: InMemorySpanExporter
) -> None:
    """HTTP -> Kafka -> a service reacting to the event -> Kafka -> bridge -> Bird -> Kafka:
    one trace id throughout."""
    async with stack(broker, exporting(exporter), roles=("ingest", "commands")) as s:
        raw, headers = delivery(channel_event(), request_id=f"req-{uuid.uuid4()}")
        headers |= TRACE.http_headers()
        assert await post_webhook(s.bridge.url, raw, headers) == 204
        (event,) = await read_topic(broker.bootstrap, s.config.topics.events, expect=1)
        downstream = from_kafka_headers(event.headers)
        assert downstream is not None
        # The service that reads the event sends a command in the same trace.
        command = create_command()
        await s.client.send(command, headers=downstream.http_headers())
        assert (await s.client.final(command["commandId"]))["data"]["status"] == "succeeded"
        requests = await s.bird_requests(TRACE.trace_id)
    assert requests
    assert {r["traceparent"][3:35] for r in requests} == {TRACE.trace_id}
    results = s.client.results.headers[command["commandId"]]
    assert {h["traceparent"][3:35] for h in results} == {TRACE.trace_id.encode()}
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans if s.context} == {TRACE_ID}
    kinds = {s.kind for s in spans}
    assert kinds >= {SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.CLIENT, SpanKind.PRODUCER}
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    (consumer,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert parent_id(consumer) == span_id(server)  # through the event record


async def test_spans_go_to_the_otlp_endpoint_and_the_last_ones_are_sent_at_stop(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard variables alone: the OTLP/HTTP exporter posts to the endpoint, in
    batches (the default 5 s delay is longer than this test), flushed when the bridge stops."""
    sink = OtlpSink(keep_names=True)
    await sink.start()
    try:
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "bridge-test"}
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        config = bridge_config(broker.bootstrap)
        raw, headers = delivery(channel_event())
        async with running_bridge(config, tracing=tracing_from_env(environ)) as app:
            assert await post_webhook(app.url, raw, headers | TRACE.http_headers()) == 204
            assert sink.spans == 0  # batched, not sent yet
    finally:
        await sink.stop()
    assert sink.span_names == ["POST /webhooks/bird"]
    assert sink.trace_ids == {TRACE.trace_id}
