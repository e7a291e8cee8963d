"""The typed records (bridge/messages.py) are written byte for byte as the dict-built ones
were: consumers, and ledgers replaying stored results, see no difference.

``_before_event`` / ``_before_result`` are the builders as they were before the structs
(dicts, then orjson), frozen here as the reference."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.commands.results import error_body, result_value
from bridge.errors import BadPayload
from bridge.events import rfc3339
from bridge.ingest.normalize import (
    bird_time,
    event_id,
    event_source,
    event_time,
    normalize_event,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
FIELDS = (
    ("channelId", ("id", "channelId")),
    ("connectorId", ("connectorId",)),
    ("workspaceId", ("workspaceId",)),
    ("platform", ("platformId", "platform")),
    ("status", ("status",)),
    ("identifier", ("identifier",)),
    ("name", ("name",)),
    ("createdAt", ("createdAt",)),
    ("updatedAt", ("updatedAt",)),
)


def _cloud_event(
    event_id: str,
    source: str,
    type_: str,
    subject: str | None,
    time: str,
    data: Mapping[str, Any],
    extensions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"specversion": "1.0", "id": event_id, "source": source}
    event["type"] = type_
    if subject is not None:
        event["subject"] = subject
    event["time"] = time
    event["datacontenttype"] = "application/json"
    event.update(extensions or {})
    event["data"] = data
    return event


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _before_event(
    body: Mapping[str, Any], raw_body: bytes, request_id: str | None, ws: str | None = None
) -> bytes:
    payload = body.get("payload")
    fields = payload if isinstance(payload, Mapping) else {}
    data: dict[str, Any] = {}
    for name, sources in FIELDS:
        for source in sources:
            value = fields.get(source)
            if value is not None:
                data[name] = value
                break
    if "workspaceId" not in data and ws:
        data["workspaceId"] = ws
    data["raw"] = payload if "payload" in body else dict(body)
    service = _text(body.get("service"))
    time = event_time(data.get("updatedAt")) or event_time(data.get("createdAt")) or rfc3339(NOW)
    extensions = {"birdservice": service} if service else {}
    extensions["birdorigin"] = "webhook"
    event = _cloud_event(
        event_id(request_id, raw_body),
        event_source(_text(data.get("workspaceId"))),
        f"com.bird.{_text(body.get('event')) or 'unknown'}",
        _text(data.get("channelId")),
        time,
        data,
        extensions,
    )
    return orjson.dumps(event)


def _after_event(
    body: Mapping[str, Any], raw_body: bytes, request_id: str | None, ws: str | None = None
) -> bytes:
    return normalize_event(
        body,
        raw_body=raw_body,
        request_id=request_id,
        default_workspace_id=ws,
        received_at=NOW,
        origin="webhook",
    ).value


def _before_result(
    command_id: str, action: str, status: str, event_id: str, **fields: Any
) -> bytes:
    data: dict[str, Any] = {"commandId": command_id, "action": action, "status": status}
    for name in ("connector", "channel", "connectors"):
        if fields.get(name) is not None:
            data[name] = fields[name]
    data.update(fields.get("extra") or {})
    data["error"] = dict(fields["error"]) if fields.get("error") is not None else None
    type_ = f"com.bird.bridge.connector.{action}.{status}"
    event = _cloud_event(event_id, "bird-bridge", type_, command_id, rfc3339(NOW), data)
    return orjson.dumps(event)


UUID = re.compile(rb'^\{"specversion":"1\.0","id":"([0-9a-f-]{36})"')


def _same_result(command_id: str, action: str, status: Any, **fields: Any) -> None:
    after = result_value(command_id=command_id, action=action, status=status, now=NOW, **fields)
    match = UUID.match(after)
    assert match is not None, after[:80]
    assert str(uuid.UUID(match.group(1).decode())) == match.group(1).decode()
    before = _before_result(command_id, action, status, match.group(1).decode(), **fields)
    assert after == before


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)
KEYS = ["id", "channelId", "connectorId", "workspaceId", "platformId", "platform", "status"]
channel_keys = st.sampled_from([*KEYS, "identifier", "name", "createdAt", "updatedAt", "ü"])
payloads = st.dictionaries(channel_keys | st.text(), json_values, max_size=10)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "service": json_values | st.just("channels"),
        "event": json_values | st.just("channel.updated"),
        "payload": payloads | json_values,
        "extra": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(body=bodies, request_id=st.none() | st.text(min_size=1))
def test_channel_events_are_the_same_bytes_as_before(
    body: dict[str, Any], request_id: str | None
) -> None:
    raw_body = orjson.dumps(body)
    parsed = orjson.loads(raw_body)  # as the webhook reads it: orjson's types, orjson's floats
    assert _after_event(parsed, raw_body, request_id) == _before_event(parsed, raw_body, request_id)


@settings(max_examples=100, deadline=None)
@given(payload=payloads)
def test_the_default_workspace_moves_to_its_place_in_data_and_nothing_else_changes(
    payload: dict[str, Any],
) -> None:
    """The one difference: ``BRIDGE_BIRD_WORKSPACE_ID``, used when the payload has no
    workspaceId, was appended after the other fields; it now sits where a payload's own
    workspaceId sits (third, as in contract.md section 2). The same JSON object."""
    body = {"service": "channels", "event": "channel.updated", "payload": payload}
    raw_body = orjson.dumps(body)
    parsed = orjson.loads(raw_body)
    after = _after_event(parsed, raw_body, "req-1", "ws-default")
    before = _before_event(parsed, raw_body, "req-1", "ws-default")
    assert orjson.loads(after) == orjson.loads(before)
    data = orjson.loads(after)["data"]
    order = [name for name, _ in FIELDS if name in data]
    assert [key for key in data if key != "raw"] == order
    assert list(data)[-1] == "raw"
    if payload.get("workspaceId") is not None:
        assert after == before


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "ch-1", "status": "active", "updatedAt": "2025-07-05T19:09:12.400Z"},
        {"id": "ch-\u00e9\U0001f600", "name": '\u2028\u0000\u001f"\\</script>', "x": 1e16},
        {"id": 7, "workspaceId": "my workspace", "connectorId": None, "big": 2**64 - 1},
        {"id": "", "createdAt": "2026-13-01T00:00:00Z", "n": [1.5e300, -0.0, 5e-324]},
    ],
)
def test_representative_events_are_the_same_bytes_as_before(payload: dict[str, Any]) -> None:
    body = {"service": "channels", "event": "channel.updated", "payload": payload}
    raw_body = orjson.dumps(body)
    parsed = orjson.loads(raw_body)
    after = _after_event(parsed, raw_body, "req-1")
    assert after == _before_event(parsed, raw_body, "req-1")
    assert b"1e+16" in after or "x" not in payload  # orjson's numbers, not msgspec's 1e16


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [250, 251])
def test_nesting_up_to_orjsons_limit_is_the_same_bytes(depth: int) -> None:
    # event > data > raw > payload > deep: 251 levels below deep is the most orjson writes.
    body = {"event": "channel.updated", "payload": {"id": "ch-1", "deep": _nested(depth)}}
    raw_body = orjson.dumps(body)
    parsed = orjson.loads(raw_body)
    assert _after_event(parsed, raw_body, None) == _before_event(parsed, raw_body, None)


@pytest.mark.parametrize("depth", [252, 1020])
def test_nesting_past_orjsons_limit_is_still_refused(depth: int) -> None:
    # 1020: as deep as orjson reads (1024 in all), past Python's recursion limit.
    raw_body = b'{"event":"channel.updated","payload":{"id":"ch-1","deep":'
    raw_body += b'{"a":' * depth + b'"bottom"' + b"}" * depth + b"}}"
    assert "a" in orjson.loads(raw_body)["payload"]["deep"]  # orjson reads it
    if depth < 254:
        with pytest.raises(orjson.JSONEncodeError):
            _before_event(orjson.loads(raw_body), raw_body, None)
    with pytest.raises(BadPayload, match="nests too deeply"):
        _after_event(orjson.loads(raw_body), raw_body, None)


CONNECTOR = {"id": "cn-1", "channelId": "ch-1", "arguments": {"x": [1e16, "é"]}, "n": None}


@pytest.mark.parametrize(
    ("action", "status", "fields"),
    [
        ("create", "accepted", {"connector": CONNECTOR}),
        ("create", "succeeded", {"connector": CONNECTOR, "channel": {"id": "ch-1"}}),
        ("get", "succeeded", {"connector": CONNECTOR, "channel": None}),
        ("list", "succeeded", {"connectors": [CONNECTOR, {"id": "cn-2"}]}),
        ("list", "succeeded", {"connectors": []}),
        ("delete", "succeeded", {"extra": {"connectorId": "cn-1", "alreadyDeleted": True}}),
        ("bogus\u00e9", "failed", {"error": error_body("invalid_command", "x", details={})}),
        (
            "create",
            "failed",
            {
                "connector": CONNECTOR,
                "error": error_body(
                    "bird_client_error", "no", http_status=422, details={"birdCode": "X"}
                ),
            },
        ),
    ],
)
def test_results_are_the_same_bytes_as_before(
    action: str, status: str, fields: dict[str, Any]
) -> None:
    _same_result("cmd-\u00e9-1", action, status, **fields)


def test_a_result_field_the_struct_does_not_know_is_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="notAField"):
        result_value(
            command_id="c", action="delete", status="succeeded", now=NOW, extra={"notAField": 1}
        )


@pytest.mark.parametrize(
    ("updated", "created", "expected"),
    [
        ("2025-07-05T19:09:12.400Z", "2025-07-05T19:08:00Z", "2025-07-05T19:09:12.400Z"),
        ("2025-13-05T19:09:00Z", "2025-07-05T19:08:00Z", "2025-07-05T19:08:00Z"),
        ("2025-07-05T19:09:00", None, None),
        (None, "2025-07-05T24:08:00Z", None),
        (7, None, None),
    ],
)
def test_bird_time_is_parsed_once_for_the_event_time_and_its_age(
    updated: object, created: object, expected: str | None
) -> None:
    """``bird_time`` is the same choice of field as before (``event_time`` of updatedAt, else
    createdAt), with the moment parsed; a record built with it passed in is the record built
    without, byte for byte (the handler passes it, reconciliation does not)."""
    payload = {"id": "ch-1", "updatedAt": updated, "createdAt": created}
    stamp = bird_time(payload)
    assert (stamp[0] if stamp else None) == expected
    assert (stamp[0] if stamp else None) == (event_time(updated) or event_time(created))
    if stamp is not None:
        assert stamp[1] == datetime.fromisoformat(expected or "")
    trace = (("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)
    kwargs: dict[str, Any] = {
        "raw_body": b"{}",
        "request_id": "r-1",
        "default_workspace_id": None,
        "received_at": NOW,
        "origin": "webhook",
        "trace": trace,
    }
    body = {"event": "channel.updated", "payload": payload}
    given_stamp = normalize_event(body, stamp=stamp, **kwargs)
    assert given_stamp == normalize_event(body, **kwargs)
    assert given_stamp.headers[-1] == trace[0]
    time = orjson.loads(given_stamp.value)["time"]
    assert time == (expected or rfc3339(NOW))
