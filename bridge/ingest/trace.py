"""W3C Trace Context (traceparent, tracestate) from a webhook to its event record. Pure.

A well-formed ``traceparent`` is carried unchanged, with ``tracestate`` next to it, so the
event keeps the caller's trace id (contract section 9). Anything else is dropped: a bad
trace header never refuses a webhook. The format is ``bridge.tracecontext``; with spans
exported, the record names the delivery's span instead (``bridge.ingest.http``).
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.tracecontext import TRACEPARENT, TRACESTATE, valid_traceparent, valid_tracestate

__all__ = ["TRACEPARENT", "TRACESTATE", "trace_headers"]


def trace_headers(
    traceparent: Sequence[str], tracestate: Sequence[str]
) -> tuple[tuple[str, bytes], ...]:
    """The Kafka headers that carry this request's trace context (all header values given:
    a repeated ``traceparent`` is invalid, repeated ``tracestate`` lines are one list)."""
    # The hot path of every traced webhook: no TraceContext object (``from_http`` is the same).
    if len(traceparent) != 1 or not valid_traceparent(value := traceparent[0]):
        return ()
    state = ",".join(tracestate)
    if not valid_tracestate(state):
        return ((TRACEPARENT, value.encode()),)
    return ((TRACEPARENT, value.encode()), (TRACESTATE, state.encode()))
