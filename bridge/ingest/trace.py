"""W3C Trace Context (traceparent, tracestate) from a webhook to its event record. Pure.

A well-formed ``traceparent`` is carried unchanged, with ``tracestate`` next to it, so the
event keeps the caller's trace id (contract section 9). Anything else is dropped: a bad
trace header never refuses a webhook.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# version-traceid-parentid-flags, lower-case hex (W3C Trace Context, section 3.2).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# The spec asks to carry at least 512 characters; more than this is not a tracestate.
_MAX_TRACESTATE_CHARS = 4096


def trace_headers(
    traceparent: Sequence[str], tracestate: Sequence[str]
) -> tuple[tuple[str, bytes], ...]:
    """The Kafka headers that carry this request's trace context (all header values given:
    a repeated ``traceparent`` is invalid, repeated ``tracestate`` lines are one list)."""
    if len(traceparent) != 1:
        return ()
    value = traceparent[0]
    if (
        len(value) != 55
        or not _TRACEPARENT.fullmatch(value)
        or value.startswith("ff")
        or value[3:35] == _ZERO_TRACE_ID
        or value[36:52] == _ZERO_PARENT_ID
    ):
        return ()
    state = ",".join(tracestate)
    if not state or len(state) > _MAX_TRACESTATE_CHARS or not state.isascii():
        return ((TRACEPARENT, value.encode()),)
    return ((TRACEPARENT, value.encode()), (TRACESTATE, state.encode()))
