"""Result CloudEvents (contract section 4) and dead-letter records (section 5). Pure."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec
import orjson
from msgspec import UNSET

from bridge.dlq.select import KEPT_ON_DEAD_LETTER
from bridge.events import Record, encode, rfc3339, to_record
from bridge.kafka.size import MAX_RECORD_SIZE, size_of
from bridge.messages import DATA_CONTENT_TYPE, SPEC_VERSION, ResultData, ResultError, ResultEvent
from bridge.messages import Status as Status
from bridge.tracecontext import TraceContext

SOURCE: Literal["bird-bridge"] = "bird-bridge"
MAX_REASON = 1000  # characters of a dead letter's dlq-reason


def result_value(
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
) -> bytes:
    """The result CloudEvent, encoded once: these bytes are published, kept in the ledger
    and published again for a command seen again."""
    data = ResultData(
        command_id=command_id,
        action=action,
        status=status,
        connector=dict(connector) if connector is not None else UNSET,
        channel=dict(channel) if channel is not None else UNSET,
        connectors=[dict(c) for c in connectors] if connectors is not None else UNSET,
        error=msgspec.convert(error, ResultError) if error is not None else None,
        **_delete_fields(extra or {}),
    )
    event = ResultEvent(
        specversion=SPEC_VERSION,
        id=str(uuid.uuid4()),
        source=SOURCE,
        type=f"com.bird.bridge.connector.{action}.{status}",
        subject=command_id,
        time=rfc3339(now),
        datacontenttype=DATA_CONTENT_TYPE,
        data=data,
    )
    return encode(event)


def _delete_fields(extra: Mapping[str, Any]) -> dict[str, Any]:
    """A delete result's ``connectorId`` / ``alreadyDeleted``, as ``ResultData`` names
    them; any other name is a programming error, refused here rather than dropped."""
    names = {"connectorId": "connector_id", "alreadyDeleted": "already_deleted"}
    unknown = sorted(set(extra) - set(names))
    if unknown:
        raise ValueError(f"result fields not in ResultData: {unknown}")
    return {names[key]: value for key, value in extra.items()}


def result_record(*, command_id: str, **fields: Any) -> Record:
    """The Kafka record of a result (``result_value``'s arguments)."""
    return stored_result_record(command_id, result_value(command_id=command_id, **fields))


def stored_result_record(
    command_id: str, value: bytes, trace: TraceContext | None = None
) -> Record:
    """The Kafka record of an encoded result: keyed and correlated by its commandId, and
    carrying the command's trace context (contract 13)."""
    record = to_record(orjson.Fragment(value), key=command_id, correlation_id=command_id)
    if trace is None:
        return record
    return Record(record.key, record.value, record.headers + trace.kafka_headers())


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


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    keep = limit
    while True:
        note = f"... ({len(text) - keep} characters cut)"
        if keep + len(note) <= limit or keep == 0:
            return text[:keep] + note
        keep = max(limit - len(note), 0)


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
    limit: int = MAX_RECORD_SIZE,
    refused_size: int | None = None,
) -> Record:
    """The original bytes and headers, plus the reason and where the record came from.

    A dead letter must always be writable: a copy over ``limit`` (an original close to
    Kafka's record limit, tipped over by the dlq-* headers) leaves out the value, then the
    original headers, then the key, and says so in headers (contract.md, section 5).
    ``refused_size``: Kafka refused a copy of that size (a broker limit below ours): leave
    out all three."""
    value = value or b""
    # A redriven record's count survives its next dead letter: it cannot loop forever.
    original = tuple(
        (k, v) for k, v in headers if not k.startswith("dlq-") or k in KEPT_ON_DEAD_LETTER
    )
    base: list[tuple[str, bytes]] = [
        ("dlq-reason", shorten(reason, MAX_REASON).encode()),
        ("dlq-source-topic", topic.encode()),
        ("dlq-source-partition", str(partition).encode()),
        ("dlq-source-offset", str(offset).encode()),
    ]

    def build(key: bytes | None, value: bytes, kept: tuple[tuple[str, bytes], ...]) -> Record:
        extra = list(base)
        if command_id and not any(k == "correlation-id" for k, _ in kept):
            extra.append(("correlation-id", command_id.encode()))
        return Record(key=key, value=value, headers=kept + tuple(extra))

    full = build(key, value, original)
    size = size_of(full)
    if refused_size is not None:
        why = f"Kafka refused the copy of {refused_size} bytes as too large"
        limit = 0  # leave out everything that can be left out
    elif size <= limit:
        return full
    else:
        why = f"the copy would be {size} bytes, over Kafka's record limit of {limit}"
    base += [("dlq-value-omitted", why.encode()), ("dlq-original-size", str(len(value)).encode())]
    record = build(key, b"", original)
    if size_of(record) > limit and original:
        base.append(("dlq-headers-omitted", str(len(original)).encode()))
        record = build(key, b"", ())
    if size_of(record) > limit and key is not None:
        base.append(("dlq-key-omitted", str(len(key)).encode()))
        record = build(None, b"", ())
    return record
