"""W3C Trace Context (``traceparent``, ``tracestate``) as the bridge carries it. Pure.

A ``TraceContext`` is read from a webhook's HTTP headers (contract section 9) or a command
record's Kafka headers (section 13) and written to Kafka records and Bird requests. Only a
well-formed ``traceparent`` is carried; anything else is dropped (with its ``tracestate``):
a bad trace header never refuses a webhook nor fails a command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# version-traceid-parentid-flags, lower-case hex (W3C Trace Context, section 3.2).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# The spec asks to carry at least 512 characters; more than this is not a tracestate.
MAX_TRACESTATE_CHARS = 4096


def valid_traceparent(value: str) -> bool:
    """Whether ``value`` is a ``traceparent`` the bridge carries: 55 characters, lower-case
    hex, not version ``ff``, neither id all zeros."""
    return (
        len(value) == 55
        and _TRACEPARENT.fullmatch(value) is not None
        and not value.startswith("ff")
        and value[3:35] != _ZERO_TRACE_ID
        and value[36:52] != _ZERO_PARENT_ID
    )


def valid_tracestate(value: str) -> bool:
    return 0 < len(value) <= MAX_TRACESTATE_CHARS and value.isascii()


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A valid ``traceparent`` and, if any, the ``tracestate`` that goes with it."""

    traceparent: str
    tracestate: str | None = None

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35]

    @property
    def parent_id(self) -> str:
        """The span id this context names as the parent of what continues it."""
        return self.traceparent[36:52]

    @property
    def sampled(self) -> bool:
        return bool(int(self.traceparent[53:55], 16) & 1)

    def kafka_headers(self) -> tuple[tuple[str, bytes], ...]:
        if self.tracestate is None:
            return ((TRACEPARENT, self.traceparent.encode()),)
        return ((TRACEPARENT, self.traceparent.encode()), (TRACESTATE, self.tracestate.encode()))

    def http_headers(self) -> dict[str, str]:
        if self.tracestate is None:
            return {TRACEPARENT: self.traceparent}
        return {TRACEPARENT: self.traceparent, TRACESTATE: self.tracestate}


def from_http(traceparent: Sequence[str], tracestate: Sequence[str]) -> TraceContext | None:
    """The context of an HTTP request, given all values of each header: a repeated
    ``traceparent`` is invalid, repeated ``tracestate`` lines are one list."""
    if len(traceparent) != 1 or not valid_traceparent(traceparent[0]):
        return None
    state = ",".join(tracestate)
    return TraceContext(traceparent[0], state if valid_tracestate(state) else None)


def from_kafka_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> TraceContext | None:
    """The context a Kafka record carries in its headers (None: none, or not valid)."""
    parents: list[str] = []
    states: list[str] = []
    for name, value in headers or ():
        if name not in (TRACEPARENT, TRACESTATE):
            continue
        try:
            text = (value or b"").decode("ascii")
        except UnicodeDecodeError:
            if name == TRACEPARENT:
                return None
            continue
        (parents if name == TRACEPARENT else states).append(text)
    return from_http(parents, states)


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """A version-00 ``traceparent`` from OpenTelemetry's integer ids."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"
