"""Every CloudEvent record the bridge writes is read by the official CloudEvents SDK
(PyPI ``cloudevents`` 2.x, Kafka binding, structured mode): contract section 9.

Here every kind of record, from the pure builders, with generated webhook payloads;
tests/integration/test_cloudevents_records.py reads what a running bridge wrote. Dead
letters carry the original bytes and the ledger is internal JSON: neither is a CloudEvent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import unquote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.commands.results import Status, error_body, result_record
from bridge.events import Record
from bridge.ingest.normalize import normalize_event, parse_body
from tests.cloudevents_helpers import read_with_sdk

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

# -- channel events -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# Timestamps Bird sends, nearly sends, and never should: all must give a readable event.
timestamps = st.sampled_from(
    [
        "2025-07-05T19:09:12.400Z",
        "2025-07-05T19:09:12+02:00",
        "2025-07-05T19:09:12.123456789-05:30",
        "yesterday",
        "2026-01-01 10:00:00",
        "2026-01-01T10:00:00",
        "2026-01-01T10:00:00.5",
        "2026-13-01T10:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T10:00:00+24:00",
        "2026-01-01T10:00Z",
        "2026-01-01t10:00:00z",
        "",
    ]
)
field_values = timestamps | json_values
ids = st.text(min_size=1) | st.sampled_from(["my workspace", "a/b?c#d", "100%", "ws:1", "é"])
payloads = st.fixed_dictionaries(
    {},
    optional={
        "id": ids | json_values,
        "workspaceId": ids | json_values,
        "updatedAt": field_values,
        "createdAt": field_values,
        "status": json_values,
        "name": json_values,
        "platformId": json_values,
        "connectorId": json_values,
    },
)
bodies = st.fixed_dictionaries(
    {"payload": payloads | json_values},
    optional={"service": json_values | st.just("channels"), "event": json_values | ids},
) | st.dictionaries(st.text(), json_values, max_size=4)


def channel_event_record(
    body: dict[str, Any], request_id: str | None, workspace_id: str | None
) -> Record:
    raw = orjson.dumps(body)
    return normalize_event(
        parse_body(raw),
        raw_body=raw,
        request_id=request_id,
        default_workspace_id=workspace_id,
        received_at=RECEIVED,
        origin="webhook",
    )


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        ("2025-07-05T19:09:12.400Z", "2025-07-05T19:09:12.400Z"),
        ("2025-07-05T19:09:12+02:00", "2025-07-05T19:09:12+02:00"),
        ("yesterday", "2026-01-02T03:04:05.678Z"),
        ("2026-01-01 10:00:00", "2026-01-02T03:04:05.678Z"),
        ("2026-01-01T10:00:00", "2026-01-02T03:04:05.678Z"),
        ("2026-01-01T10:00:00+24:00", "2026-01-02T03:04:05.678Z"),
    ],
)
def test_time_is_birds_only_when_rfc3339_with_a_zone(updated_at: str, expected: str) -> None:
    body = {"service": "channels", "event": "channel.updated"}
    record = channel_event_record(
        {**body, "payload": {"id": "c1", "updatedAt": updated_at}}, "req-1", "ws-1"
    )
    event = read_with_sdk(record)
    assert orjson.loads(record.value)["time"] == expected
    assert orjson.loads(record.value)["data"]["raw"]["updatedAt"] == updated_at
    assert event.get_extension("birdorigin") == "webhook"


def test_workspace_id_is_percent_encoded_in_source() -> None:
    body = {"event": "channel.updated", "payload": {"id": "c1", "workspaceId": "my workspace/1"}}
    event = read_with_sdk(channel_event_record(body, "req-1", None))
    assert event.get_source() == "bird:workspaces/my%20workspace%2F1"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=bodies,
    request_id=st.none() | st.text(min_size=1, max_size=64),
    workspace_id=st.none() | ids,
)
def test_any_webhook_payload_gives_an_event_the_sdk_reads(
    body: dict[str, Any], request_id: str | None, workspace_id: str | None
) -> None:
    record = channel_event_record(body, request_id, workspace_id)
    event = read_with_sdk(record)
    time = event.get_time()
    assert time is not None
    assert time.tzinfo is not None
    assert event.get_extension("birdorigin") == "webhook"
    source = event.get_source()
    if source != "bird":
        workspace = orjson.loads(record.value)["data"]["workspaceId"]
        assert unquote(source.removeprefix("bird:workspaces/")) == workspace


# -- command results ------------------------------------------------------------------------

ACTIONS = ("create", "delete", "get", "list", "unknown")  # unknown: an invalid command's
ERROR_CODES = (
    *("invalid_command", "bird_client_error", "bird_unavailable"),
    *("timeout", "channel_failed", "result_too_large"),
)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", get_args(Status))
def test_every_result_kind_is_read_by_the_sdk(action: str, status: Status) -> None:
    connector = {"id": "k1", "status": "active", "channel": {"channelId": "c1"}}
    fields: dict[str, Any] = {}
    if action in ("create", "get"):
        fields = {"connector": connector, "channel": {"id": "c1", "status": "active"}}
    elif action == "list":
        fields = {"connectors": [connector]}
    elif action == "delete":
        fields = {"extra": {"connectorId": "k1", "alreadyDeleted": False}}
    for code in ERROR_CODES if status == "failed" else (None,):
        error = error_body(code, "what went wrong") if code else None
        record = result_record(
            command_id="cmd-1", action=action, status=status, now=RECEIVED, error=error, **fields
        )
        event = read_with_sdk(record)
        assert event.get_type() == f"com.bird.bridge.connector.{action}.{status}"
        assert event.get_subject() == "cmd-1"


@settings(max_examples=100)
@given(command_id=st.text(min_size=1, max_size=128), connector=json_values)
def test_any_command_id_gives_a_result_the_sdk_reads(command_id: str, connector: Any) -> None:
    record = result_record(
        command_id=command_id,
        action="get",
        status="succeeded",
        now=RECEIVED,
        connector={"id": "k1", "anything": connector},
    )
    assert read_with_sdk(record).get_subject() == command_id
