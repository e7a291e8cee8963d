"""Signed Bird deliveries for tests: body + headers exactly as Bird sends them (bird-api.md 4.4)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from bridge.ingest.verify import sign
from tests.kafka_helpers import PUBLIC_URL, SIGNING_KEY


def channel_payload(**fields: Any) -> dict[str, Any]:
    payload = {
        "id": str(uuid.uuid4()),
        "platformId": "sms",
        "name": "Support SMS",
        "connectorId": str(uuid.uuid4()),
        "identifier": "+31612345678",
        "status": "active",
        "createdAt": "2025-07-05T19:08:46.010Z",
        "updatedAt": "2025-07-05T19:09:12.400Z",
    }
    payload.update(fields)
    return payload


def delivery(
    body: dict[str, Any] | bytes,
    *,
    key: str = SIGNING_KEY,
    url: str = PUBLIC_URL,
    request_id: str | None = None,
    timestamp: str = "1751742552",
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {
        "Content-Type": "application/json",
        "messagebird-signature": sign(key, timestamp, url, raw),
        "messagebird-request-timestamp": timestamp,
        "messagebird-request-id": request_id or str(uuid.uuid4()),
    }
    return raw, headers


def channel_event(event: str = "channel.updated", **fields: Any) -> dict[str, Any]:
    return {"service": "channels", "event": event, "payload": channel_payload(**fields)}
