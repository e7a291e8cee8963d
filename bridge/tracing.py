"""OpenTelemetry tracing: spans exported over OTLP/HTTP, or trace context propagation only.

Configured by the standard ``OTEL_*`` variables. Spans are made and exported only when
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and
neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says otherwise).
Without them no SDK is loaded and no span exists: ``Tracing.span`` hands back the parent
context unchanged, so what arrives with a ``traceparent`` leaves with the same one.

The code that makes spans passes a ``TraceContext`` down explicitly (webhook -> record,
command record -> ledger, Bird requests, results); OpenTelemetry's own "current span"
is never set or read. Span attributes name routes, ids and outcomes, never a key, a
signature or a body; a failed span records the error's type, not its message.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from bridge import __version__
from bridge.tracecontext import TraceContext, format_traceparent

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, Tracer

SERVICE_NAME = "channel-bridge"
Kind = Literal["server", "client", "producer", "consumer", "internal"]
AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for spans to be exported."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
    return (
        bool(endpoint.strip())
        and environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"
        and environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"
    )


class SpanScope:
    """One unit of work. ``context`` is what its children and outgoing requests carry.

    This base class is the "no span" case (export off): ``context`` is the parent's,
    unchanged, and the rest does nothing."""

    __slots__ = ("context",)

    def __init__(self, context: TraceContext | None) -> None:
        self.context = context

    def set(self, key: str, value: AttributeValue | None) -> None:
        """An attribute (None: left out)."""

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """A timed event in the span."""

    def end(self, error: str | None = None) -> None:
        """End the span; ``error`` names what failed (a type or an outcome, never a message)."""

    def __enter__(self) -> SpanScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc_type.__name__ if exc_type is not None else None)


class _RecordingScope(SpanScope):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        sc = span.get_span_context()
        state = sc.trace_state.to_header() if sc.trace_state else ""
        super().__init__(
            TraceContext(format_traceparent(sc.trace_id, sc.span_id, sc.trace_flags), state or None)
        )
        self._span = span

    def set(self, key: str, value: AttributeValue | None) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        self._span.add_event(name, dict(attributes) if attributes else None)

    def end(self, error: str | None = None) -> None:
        if error is not None:
            from opentelemetry.trace import StatusCode

            self._span.set_attribute("error.type", error)
            self._span.set_status(StatusCode.ERROR)
        self._span.end()


class Tracing:
    """Makes spans (with a tracer provider) or only passes context on (without)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self._tracer: Tracer | None = (
            provider.get_tracer("bridge", __version__) if provider is not None else None
        )

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @classmethod
    def with_processor(cls, processor: SpanProcessor) -> Tracing:
        """Spans to ``processor``, with the resource and sampler of the ``OTEL_*``
        variables (``service.name`` ``channel-bridge`` unless they name one)."""
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider

        attributes: dict[str, str] = {"service.version": __version__}
        detected = OTELResourceDetector().detect().attributes
        if not detected.get("service.name"):
            attributes["service.name"] = SERVICE_NAME
        provider = TracerProvider(
            resource=Resource.create(attributes).merge(Resource(detected)),
            shutdown_on_exit=False,  # shutdown() does it, within the bridge's deadline
        )
        provider.add_span_processor(processor)
        return cls(provider)

    def span(
        self,
        name: str,
        parent: TraceContext | None,
        *,
        kind: Kind = "internal",
        attributes: Attributes | None = None,
    ) -> SpanScope:
        """A span child of ``parent`` (a new trace when None), to end with ``end()`` or
        use as a context manager. Without a tracer: ``parent`` passed on, nothing else."""
        if self._tracer is None:
            return SpanScope(parent)
        from opentelemetry.trace import SpanKind

        span = self._tracer.start_span(
            name,
            context=_otel_context(parent),
            kind=SpanKind[kind.upper()],
            attributes=dict(attributes) if attributes else None,
        )
        return _RecordingScope(span)

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Export what is left and stop; False when that took longer than ``timeout_s``
        (a collector that does not answer): the export is then left to a daemon thread
        that does not hold up the process's exit. Blocking: call it in a thread."""
        if self.provider is None:
            return True
        closing = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        closing.start()
        closing.join(timeout_s)
        return not closing.is_alive()


def tracing_from_env(environ: Mapping[str, str]) -> Tracing:
    """Export to the OTLP/HTTP endpoint the variables name, in batches; or propagation
    only. The exporter reads its own variables (``OTEL_EXPORTER_OTLP_*``) from the
    process environment, the batch processor ``OTEL_BSP_*``, the provider
    ``OTEL_TRACES_SAMPLER`` and ``OTEL_RESOURCE_ATTRIBUTES``."""
    if not exporting(environ):
        return Tracing()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return Tracing.with_processor(BatchSpanProcessor(OTLPSpanExporter()))


def _otel_context(parent: TraceContext | None) -> Context:
    """OpenTelemetry's context holding ``parent`` as a remote span (empty: a new trace)."""
    from opentelemetry import trace
    from opentelemetry.context import Context

    if parent is None:
        return Context()
    state = trace.TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    span_context = trace.SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.parent_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(parent.traceparent[53:55], 16)),
        trace_state=state,
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), Context())
