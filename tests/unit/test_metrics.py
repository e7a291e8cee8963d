"""The pure pieces behind the metrics: label vocabularies, event age, lag bookkeeping."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.bird.policy import status_class
from bridge.commands.offsets import OffsetTracker
from bridge.commands.parse import parse_command
from bridge.commands.worker import invalid_command_reason
from bridge.config import Role
from bridge.errors import InvalidCommand
from bridge.ingest.age import bird_timestamp, event_age_s
from bridge.metrics import BIRD_STATUS_CLASSES, DEAD_LETTER_REASONS, Metrics
from tests.kafka_helpers import bridge_config

# --- Bird calls by status class ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "2xx"),
        (201, "2xx"),
        (204, "2xx"),
        (299, "2xx"),
        (301, "3xx"),
        (400, "4xx"),
        (404, "4xx"),
        (409, "4xx"),
        (428, "4xx"),
        (429, "429"),
        (430, "4xx"),
        (499, "4xx"),
        (500, "5xx"),
        (503, "5xx"),
        (504, "5xx"),
        (599, "5xx"),
        (None, "error"),
        (100, "error"),
        (199, "error"),
        (600, "error"),
        (0, "error"),
    ],
)
def test_status_class(status: int | None, expected: str) -> None:
    assert status_class(status) == expected
    assert expected in BIRD_STATUS_CLASSES


# --- dead letters by reason ---------------------------------------------------------------


def _refusal(value: bytes | None) -> InvalidCommand:
    with pytest.raises(InvalidCommand) as caught:
        parse_command(value, default_workspace_id="ws-1")
    return caught.value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "no_value"),
        (b"", "not_json"),
        (b"{nope", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"create"', "not_an_object"),
        (b"{}", "invalid_command"),
        (b'{"commandId": "c-1"}', "invalid_command"),
        (b'{"commandId": "c-1", "action": "explode"}', "invalid_command"),
        (b'{"commandId": "c-1", "action": "create"}', "invalid_command"),
        (b'{"commandId": "c-1", "action": "get", "connectorId": ""}', "invalid_command"),
        (
            b'{"commandId": "c-1", "action": "create", "connector": '
            b'{"connectorTemplateRef": "sms:1", "name": "n", "evil": 1}}',
            "invalid_command",
        ),
    ],
)
def test_dead_letter_reason_of_an_invalid_record(value: bytes | None, expected: str) -> None:
    """Real refusals of the parser: the label is one of a fixed set, whatever the text."""
    exc = _refusal(value)
    assert invalid_command_reason(exc) == expected
    assert expected in DEAD_LETTER_REASONS


def test_a_field_named_like_a_whole_record_problem_is_still_invalid_command() -> None:
    exc = InvalidCommand("connector.name", "not valid JSON (made up)", "c-1", action="create")
    assert invalid_command_reason(exc) == "invalid_command"


def test_dead_letter_reasons_are_snake_case_and_exported_from_the_start() -> None:
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", r) for r in DEAD_LETTER_REASONS)
    text = Metrics().render().decode()
    for reason in DEAD_LETTER_REASONS:
        assert f'bridge_dead_letters_total{{reason="{reason}"}} 0.0' in text


# --- webhook event age ---------------------------------------------------------------------

RECEIVED = datetime(2025, 7, 5, 19, 10, 0, tzinfo=UTC)


def _body(**payload: Any) -> dict[str, Any]:
    return {"service": "channels", "event": "channel.updated", "payload": payload}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_body(updatedAt="2025-07-05T19:09:12.400Z", createdAt="2025-07-05T19:08:00Z"), 47.6),
        (_body(createdAt="2025-07-05T19:08:00Z"), 120.0),
        # An offset other than Z is honoured.
        (_body(updatedAt="2025-07-05T21:09:30+02:00"), 30.0),
        # updatedAt unusable (no offset, not a time, not text): createdAt.
        (_body(updatedAt="2025-07-05T19:09:59", createdAt="2025-07-05T19:09:00Z"), 60.0),
        (_body(updatedAt="yesterday", createdAt="2025-07-05T19:09:00Z"), 60.0),
        (_body(updatedAt=1751742552, createdAt="2025-07-05T19:09:00Z"), 60.0),
        (_body(updatedAt="2025-13-05T19:09:00Z", createdAt="2025-07-05T19:09:00Z"), 60.0),
        # Clock skew: Bird's time after our receipt counts as 0.
        (_body(updatedAt="2025-07-05T19:10:05Z"), 0.0),
        # No usable timestamp at all.
        (_body(updatedAt="2025-07-05T19:09:59"), None),
        (_body(), None),
        ({"updatedAt": "2025-07-05T19:09:00Z"}, None),  # only the payload's fields count
        ({"payload": "2025-07-05T19:09:00Z"}, None),
        ({}, None),
    ],
)
def test_event_age(body: dict[str, Any], expected: float | None) -> None:
    age = event_age_s(body, RECEIVED)
    if expected is None:
        assert age is None
    else:
        assert age == pytest.approx(expected)


def test_event_age_uses_the_time_the_cloudevent_gets() -> None:
    """The age is measured from the same field the event's ``time`` is taken from."""
    stamp = bird_timestamp(_body(updatedAt="2025-07-05T19:09:12.400Z"))
    assert stamp == RECEIVED - timedelta(seconds=47.6)


# --- lag bookkeeping ---------------------------------------------------------------------


def test_unfinished_from_is_the_first_offset_a_restart_processes() -> None:
    tracker = OffsetTracker()
    assert tracker.unfinished_from() is None
    for offset in (10, 11, 12):
        tracker.add(offset)
    assert tracker.unfinished_from() == 10
    tracker.done(11)
    assert tracker.unfinished_from() == 10
    tracker.done(10)
    assert tracker.unfinished_from() == 12
    tracker.done(12)
    assert tracker.unfinished_from() == 13
    # Committing does not change what is unfinished.
    tracker.committed = 13
    assert tracker.unfinished_from() == 13
    assert tracker.committable() is None


def _lag_lines(metrics: Metrics) -> list[str]:
    text = metrics.render().decode()
    return [line for line in text.splitlines() if line.startswith("bridge_commands_consumer_lag")]


def test_consumer_lag_is_read_at_scrape_time_and_a_partition_leaves_with_its_source() -> None:
    metrics = Metrics()
    assert _lag_lines(metrics) == []
    assert "# TYPE bridge_commands_consumer_lag gauge" in metrics.render().decode()
    lag = {3: 7, 0: 0}
    metrics.consumer_lag.source = lambda: lag
    assert _lag_lines(metrics) == [
        'bridge_commands_consumer_lag{partition="0"} 0.0',
        'bridge_commands_consumer_lag{partition="3"} 7.0',
    ]
    del lag[3]  # revoked
    assert _lag_lines(metrics) == ['bridge_commands_consumer_lag{partition="0"} 0.0']


# --- readiness ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "label"),
    [(["ingest"], "ingest"), (["commands"], "commands"), (["ingest", "commands"], "all")],
)
def test_ready_gauge_names_the_roles_and_follows_readiness(roles: list[Role], label: str) -> None:
    bridge = Bridge(bridge_config("127.0.0.1:1"), roles)
    line = f'bridge_ready{{role="{label}"}}'
    assert f"{line} 0.0" in bridge.metrics.render().decode()  # not connected to Kafka
    bridge.readiness_checks[:] = [lambda: True]
    assert f"{line} 1.0" in bridge.metrics.render().decode()
    bridge.draining = True
    assert f"{line} 0.0" in bridge.metrics.render().decode()


# --- the webhook path's histograms --------------------------------------------------------


@pytest.mark.parametrize("labels", [(), ("topic",)])
def test_loop_histogram_exposes_what_prometheus_histogram_does(labels: tuple[str, ...]) -> None:
    """Same observations, same text on /metrics (buckets on their bounds, +Inf, _count,
    _sum, _created), whether the value lands on a bound, between bounds or past the last."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from bridge.metrics import LoopHistogram

    texts = []
    for kind in (Histogram, LoopHistogram):
        registry = CollectorRegistry()
        metric = kind("h", "doc", list(labels), buckets=(0.005, 0.1, 1, 10), registry=registry)
        target = metric.labels("events") if labels else metric
        for value in (0.0, 0.005, 0.0051, 0.1, 0.7, 10, 11.5, 1e9):
            target.observe(value)
        text = generate_latest(registry)
        # The creation times differ by the moments the two were made.
        texts.append(re.sub(rb"(h_created(\{[^}]*\})?) \S+", rb"\1 T", text))
    assert b"h_created" in texts[0]
    assert texts[0] == texts[1]
    assert b'h_bucket{le="0.005"} 2.0' in texts[1].replace(b',topic="events"', b"")


def test_loop_histogram_with_labels_is_observed_through_a_child() -> None:
    from prometheus_client import CollectorRegistry

    from bridge.metrics import LoopHistogram

    metric = LoopHistogram("h", "doc", ["topic"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="missing label values"):
        metric.observe(1.0)


@pytest.mark.parametrize("labels", [(), ("outcome",)])
def test_loop_counter_exposes_what_prometheus_counter_does(labels: tuple[str, ...]) -> None:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    from bridge.metrics import LoopCounter

    texts = []
    for kind in (Counter, LoopCounter):
        registry = CollectorRegistry()
        metric = kind("c", "doc", list(labels), registry=registry)
        target = metric.labels("published") if labels else metric
        target.inc()
        target.inc(2.5)
        with pytest.raises(ValueError, match="non-negative"):
            target.inc(-1)
        text = generate_latest(registry)
        texts.append(re.sub(rb"(c_created(\{[^}]*\})?) \S+", rb"\1 T", text))
    assert b"c_created" in texts[0]
    assert texts[0] == texts[1]
    assert b"c_total" in texts[1]
    assert b" 3.5\n" in texts[1]
    if labels:
        with pytest.raises(ValueError, match="missing label values"):
            LoopCounter("c", "doc", ["outcome"], registry=CollectorRegistry()).inc()
