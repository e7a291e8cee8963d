"""Trace context from headers to headers, and spans with or without export (contract 9, 13)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bridge.tracecontext import (
    TraceContext,
    format_traceparent,
    from_http,
    from_kafka_headers,
    valid_traceparent,
)
from bridge.tracing import SERVICE_NAME, Tracing, exporting, tracing_from_env

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_context_names_its_trace_and_parent_and_writes_both_kinds_of_headers() -> None:
    context = TraceContext(GOOD, "congo=t61rcWkgMzE")
    assert context.trace_id == TRACE_ID
    assert context.parent_id == "00f067aa0ba902b7"
    assert context.sampled
    assert not TraceContext(GOOD[:-2] + "00").sampled
    assert context.kafka_headers() == (
        ("traceparent", GOOD.encode()),
        ("tracestate", b"congo=t61rcWkgMzE"),
    )
    assert context.http_headers() == {"traceparent": GOOD, "tracestate": "congo=t61rcWkgMzE"}
    assert TraceContext(GOOD).kafka_headers() == (("traceparent", GOOD.encode()),)
    assert TraceContext(GOOD).http_headers() == {"traceparent": GOOD}


def test_context_from_kafka_headers() -> None:
    headers = [("content-type", b"x"), ("traceparent", GOOD.encode()), ("tracestate", b"a=1")]
    assert from_kafka_headers(headers) == TraceContext(GOOD, "a=1")
    assert from_kafka_headers([*headers, ("tracestate", b"b=2")]) == TraceContext(GOOD, "a=1,b=2")
    assert from_kafka_headers(None) is None
    assert from_kafka_headers([("content-type", b"x")]) is None
    # A repeated, empty, non-ASCII or malformed traceparent is no context at all.
    assert from_kafka_headers([("traceparent", GOOD.encode())] * 2) is None
    assert from_kafka_headers([("traceparent", None)]) is None
    assert from_kafka_headers([("traceparent", GOOD.encode()[:-1] + b"\xff")]) is None
    assert from_kafka_headers([("traceparent", GOOD.upper().encode())]) is None
    # A tracestate that cannot be carried is dropped alone.
    assert from_kafka_headers([("traceparent", GOOD.encode()), ("tracestate", b"\xff")]) == (
        TraceContext(GOOD)
    )
    too_long = ("tracestate", b"a=" + b"b" * 5000)
    assert from_kafka_headers([("traceparent", GOOD.encode()), too_long]) == TraceContext(GOOD)


def test_context_from_http_headers() -> None:
    assert from_http([GOOD], ["a=1", "b=2"]) == TraceContext(GOOD, "a=1,b=2")
    assert from_http([GOOD], []) == TraceContext(GOOD)
    assert from_http([], ["a=1"]) is None
    assert from_http([GOOD, GOOD], []) is None


def test_traceparent_validity_and_formatting() -> None:
    assert valid_traceparent(GOOD)
    assert not valid_traceparent("ff" + GOOD[2:])
    assert not valid_traceparent("00-" + "0" * 32 + GOOD[35:])
    formatted = format_traceparent(int(TRACE_ID, 16), 0xF067AA0BA902B7, 0x01)
    assert formatted == GOOD
    assert valid_traceparent(format_traceparent(1, 2, 3))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_spans_are_exported_only_when_an_endpoint_is_set(
    environ: dict[str, str], expected: bool
) -> None:
    assert exporting(environ) is expected


def test_without_an_endpoint_no_sdk_is_set_up_and_the_parent_goes_on_unchanged() -> None:
    tracing = tracing_from_env({})
    assert not tracing.enabled
    assert tracing.provider is None
    parent = TraceContext(GOOD, "a=1")
    with tracing.span("anything", parent, kind="consumer") as span:
        span.set("key", "value")
        span.event("happened")
        assert span.context is parent
    assert tracing.span("root", None).context is None


def test_with_an_endpoint_a_batch_exporter_is_set_up_and_shut_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    tracing = tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert tracing.enabled
    tracing.shutdown(timeout_s=0.1)  # nothing to send: returns at once


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def test_a_span_continues_its_parent_and_children_carry_its_context(
    exporter: InMemorySpanExporter,
) -> None:
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    parent = TraceContext(GOOD, "congo=t61rcWkgMzE")
    with tracing.span("outer", parent, kind="consumer", attributes={"a": 1}) as outer:
        assert outer.context is not None
        assert outer.context.trace_id == TRACE_ID
        assert outer.context.parent_id != parent.parent_id
        assert outer.context.tracestate == "congo=t61rcWkgMzE"
        with tracing.span("inner", outer.context, kind="client") as inner:
            inner.set("http.response.status_code", 201)
            inner.set("left.out", None)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    outer_span, inner_span = spans["outer"], spans["inner"]
    assert outer_span.kind is SpanKind.CONSUMER
    assert outer_span.context is not None
    assert outer_span.parent is not None
    assert outer_span.context.trace_id == int(TRACE_ID, 16)
    assert outer_span.parent.span_id == int(parent.parent_id, 16)
    assert outer_span.parent.is_remote
    assert inner_span.parent is not None
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert inner_span.kind is SpanKind.CLIENT
    assert inner_span.attributes == {"http.response.status_code": 201}
    assert outer_span.resource.attributes["service.name"] == SERVICE_NAME


def test_a_span_without_parent_starts_a_trace_and_a_failure_names_its_type_only(
    exporter: InMemorySpanExporter,
) -> None:
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    root = tracing.span("root", None)
    assert root.context is not None
    assert root.context.sampled

    def fail() -> None:
        with root:
            raise ValueError("secret detail")

    with pytest.raises(ValueError, match="secret"):
        fail()
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes == {"error.type": "ValueError"}
    assert not span.events  # no exception event: its message could hold anything
    assert "secret" not in str(span.to_json())


def test_an_unsampled_parent_keeps_its_trace_id_and_exports_nothing(
    exporter: InMemorySpanExporter,
) -> None:
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    unsampled = TraceContext(GOOD[:-2] + "00")
    with tracing.span("dropped", unsampled) as span:
        assert span.context is not None
        assert span.context.trace_id == TRACE_ID
        assert not span.context.sampled
    assert exporter.get_finished_spans() == ()


def test_the_service_name_of_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "bridge-eu")
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    tracing.span("one", None).end()
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "bridge-eu"
