"""Result CloudEvents (contract section 4) and dead-letter records (section 5). Pure."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from bridge.events import Record, cloud_event, rfc3339, to_record

Status = Literal["accepted", "succeeded", "failed"]
SOURCE = "bird-bridge"


def result_record(
    *,
    command_id: str,
    action: str,
    status: Status,
    now: datetime,
    connector: Mapping[str, Any] | None = None,
    channel: Mapping[str, Any] | None = None,
    connectors: list[Mapping[str, Any]] | None = None,
    error: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Record:
    data: dict[str, Any] = {"commandId": command_id, "action": action, "status": status}
    if connector is not None:
        data["connector"] = connector
    if channel is not None:
        data["channel"] = channel
    if connectors is not None:
        data["connectors"] = connectors
    if extra:
        data.update(extra)
    data["error"] = dict(error) if error is not None else None
    event = cloud_event(
        event_id=str(uuid.uuid4()),
        source=SOURCE,
        type_=f"com.bird.bridge.connector.{action}.{status}",
        subject=command_id,
        time=rfc3339(now),
        data=data,
    )
    return to_record(event, key=command_id, correlation_id=command_id)


def error_body(
    code: str,
    message: str,
    *,
    retryable: bool = False,
    http_status: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "retryable": retryable,
        "httpStatus": http_status,
        "details": dict(details or {}),
    }


def dead_letter_record(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes], ...],
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    command_id: str | None,
) -> Record:
    """The original bytes and headers, plus the reason and where the record came from."""
    kept = tuple((k, v) for k, v in headers if not k.startswith("dlq-"))
    extra: list[tuple[str, bytes]] = [
        ("dlq-reason", reason.encode()),
        ("dlq-source-topic", topic.encode()),
        ("dlq-source-partition", str(partition).encode()),
        ("dlq-source-offset", str(offset).encode()),
    ]
    if command_id and not any(k == "correlation-id" for k, _ in kept):
        extra.append(("correlation-id", command_id.encode()))
    return Record(key=key, value=value or b"", headers=kept + tuple(extra))
