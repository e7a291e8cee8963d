"""Normalization of Bird webhook bodies into channel CloudEvents (contract section 2)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from bridge.errors import BadPayload
from bridge.ingest.normalize import Origin, normalize_event, parse_body

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
CHANNEL = {
    "id": "c0ffee00-3333-4d4e-9f00-aaaabbbbcccc",
    "platformId": "sms",
    "name": "Support SMS",
    "connectorId": "7f1c2d3e-0000-4a5b-8c9d-111122223333",
    "identifier": "+31612345678",
    "status": "active",
    "createdAt": "2025-07-05T19:08:46.010Z",
    "updatedAt": "2025-07-05T19:09:12.400Z",
}


def run(
    body: dict[str, Any],
    request_id: str | None = "req-1",
    ws: str | None = "ws-1",
    origin: Origin = "webhook",
) -> Any:
    raw = orjson.dumps(body)
    record = normalize_event(
        body,
        raw_body=raw,
        request_id=request_id,
        default_workspace_id=ws,
        received_at=RECEIVED,
        origin=origin,
    )
    return record, orjson.loads(record.value), raw


def test_channel_updated_becomes_the_documented_cloud_event() -> None:
    record, event, _ = run({"service": "channels", "event": "channel.updated", "payload": CHANNEL})
    assert event == {
        "specversion": "1.0",
        "id": "req-1",
        "source": "bird:workspaces/ws-1",
        "type": "com.bird.channel.updated",
        "subject": CHANNEL["id"],
        "time": "2025-07-05T19:09:12.400Z",
        "datacontenttype": "application/json",
        "birdservice": "channels",
        "birdorigin": "webhook",
        "data": {
            "channelId": CHANNEL["id"],
            "connectorId": CHANNEL["connectorId"],
            "workspaceId": "ws-1",
            "platform": "sms",
            "status": "active",
            "identifier": "+31612345678",
            "name": "Support SMS",
            "createdAt": CHANNEL["createdAt"],
            "updatedAt": CHANNEL["updatedAt"],
            "raw": CHANNEL,
        },
    }
    assert record.key == CHANNEL["id"].encode()
    assert record.header("content-type") == b"application/cloudevents+json"
    assert record.header("correlation-id") == b"req-1"


@pytest.mark.parametrize(
    ("payload", "expected_time"),
    [
        ({**CHANNEL}, "2025-07-05T19:09:12.400Z"),
        ({k: v for k, v in CHANNEL.items() if k != "updatedAt"}, "2025-07-05T19:08:46.010Z"),
        (
            {k: v for k, v in CHANNEL.items() if k not in ("updatedAt", "createdAt")},
            "2026-01-02T03:04:05.678Z",
        ),
    ],
)
def test_time_falls_back_from_updated_to_created_to_receipt(
    payload: dict[str, Any], expected_time: str
) -> None:
    _, event, _ = run({"service": "channels", "event": "channel.created", "payload": payload})
    assert event["time"] == expected_time
    assert event["type"] == "com.bird.channel.created"


def test_unknown_fields_and_statuses_pass_through_in_raw() -> None:
    payload = {**CHANNEL, "status": "quarantined", "brandNew": {"nested": [1, 2]}}
    _, event, _ = run({"service": "channels", "event": "channel.updated", "payload": payload})
    assert event["data"]["status"] == "quarantined"
    assert event["data"]["raw"] == payload


def test_payload_workspace_wins_over_the_configured_default() -> None:
    payload = {**CHANNEL, "workspaceId": "ws-from-bird"}
    _, event, _ = run({"service": "channels", "event": "channel.updated", "payload": payload})
    assert event["source"] == "bird:workspaces/ws-from-bird"
    assert event["data"]["workspaceId"] == "ws-from-bird"


def test_other_services_are_published_with_the_same_envelope() -> None:
    body = {"service": "numbers", "event": "number.assigned", "payload": {"numberId": "n-1"}}
    record, event, _ = run(body)
    assert event["type"] == "com.bird.number.assigned"
    assert event["birdservice"] == "numbers"
    assert event["data"] == {"workspaceId": "ws-1", "raw": {"numberId": "n-1"}}
    assert "subject" not in event
    assert record.key == b"ws-1"  # no channel id: keyed by workspace


@pytest.mark.parametrize("origin", ["webhook", "reconcile"])
def test_every_channel_event_names_its_origin(origin: Origin) -> None:
    _, event, _ = run({"event": "channel.updated", "payload": CHANNEL}, origin=origin)
    assert event["birdorigin"] == origin
    _, event, _ = run({"hello": "world"}, origin=origin)
    assert event["birdorigin"] == origin


def test_body_without_event_or_payload_is_kept_whole() -> None:
    record, event, raw = run({"hello": "world"}, request_id=None, ws=None)
    assert event["type"] == "com.bird.unknown"
    assert event["id"] == hashlib.sha256(raw).hexdigest()
    assert event["source"] == "bird"
    assert event["data"] == {"raw": {"hello": "world"}}
    assert record.key is None
    assert record.header("correlation-id") is None


def test_non_object_payload_is_carried_in_raw() -> None:
    _, event, _ = run({"service": "channels", "event": "channel.updated", "payload": [1, 2]})
    assert event["data"]["raw"] == [1, 2]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"text"', "must be a JSON object, got str"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_parse_body_rejects_non_objects(body: bytes, reason: str) -> None:
    with pytest.raises(BadPayload, match=reason):
        parse_body(body)
