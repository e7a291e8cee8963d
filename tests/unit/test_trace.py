"""W3C Trace Context carried from a webhook to its event record (contract section 9)."""

from __future__ import annotations

import pytest

from bridge.ingest.trace import trace_headers

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_and_tracestate_are_carried_unchanged() -> None:
    assert trace_headers([GOOD], ["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"]) == (
        ("traceparent", GOOD.encode()),
        ("tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    )
    assert trace_headers([GOOD], []) == (("traceparent", GOOD.encode()),)
    future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"
    assert trace_headers([future], []) == (("traceparent", future.encode()),)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        GOOD.upper(),
        GOOD + "-extra",
        GOOD[:-1],
        " " + GOOD,
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    ],
)
def test_an_invalid_traceparent_is_dropped_with_its_tracestate(value: str) -> None:
    assert trace_headers([value], ["congo=t61rcWkgMzE"]) == ()


def test_a_repeated_traceparent_is_dropped() -> None:
    assert trace_headers([GOOD, GOOD], []) == ()


def test_an_oversized_or_non_ascii_tracestate_is_dropped_alone() -> None:
    for state in ("a=" + "b" * 5000, "congo=é"):
        assert trace_headers([GOOD], [state]) == (("traceparent", GOOD.encode()),)
