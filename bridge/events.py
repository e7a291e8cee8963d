"""CloudEvents 1.0 in structured JSON mode (pure): build, encode, and the Kafka record shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
_CONTENT_TYPE_HEADER = ("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())


@dataclass(frozen=True)
class Record:
    """One Kafka record the bridge writes: topic-independent, ready to send."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True)
class Tombstone:
    """A record without a value: in a compacted topic, its key is forgotten."""

    key: bytes
    value: None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def rfc3339(moment: datetime) -> str:
    """``2025-07-05T19:08:45.650Z``: UTC, milliseconds, like Bird's own timestamps."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloud_event(
    *,
    event_id: str,
    source: str,
    type_: str,
    subject: str | None,
    time: str,
    data: Mapping[str, Any],
    extensions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_,
    }
    if subject is not None:
        event["subject"] = subject
    event["time"] = time
    event["datacontenttype"] = "application/json"
    if extensions:
        event.update(extensions)
    event["data"] = data
    return event


def encode(event: msgspec.Struct | Mapping[str, Any]) -> bytes:
    """A record value: the structs of bridge/messages.py as builtins (fields in declaration
    order, under their wire names, ``UNSET`` ones left out), encoded by orjson. Not
    ``msgspec.json.encode``: it writes numbers differently (``1e16`` where orjson writes
    ``1e+16``), and orjson's bytes are the ones consumers and ledgers already hold.
    orjson also refuses nesting over 254 levels (``JSONEncodeError``): the webhook
    answers that with 400."""
    return orjson.dumps(msgspec.to_builtins(event) if isinstance(event, msgspec.Struct) else event)


def to_record(
    event: msgspec.Struct | Mapping[str, Any] | orjson.Fragment,
    *,
    key: str | None,
    correlation_id: str | None,
    trace: tuple[tuple[str, bytes], ...] = (),
) -> Record:
    """The Kafka record of an event (a ``Fragment`` is already-encoded JSON, sent as is);
    ``trace`` holds the W3C Trace Context headers it carries, after the others."""
    headers: tuple[tuple[str, bytes], ...] = (
        (_CONTENT_TYPE_HEADER, ("correlation-id", correlation_id.encode()))
        if correlation_id
        else (_CONTENT_TYPE_HEADER,)
    )
    return Record(
        key=key.encode() if key is not None else None,
        value=orjson.dumps(event) if isinstance(event, orjson.Fragment) else encode(event),
        headers=headers + trace if trace else headers,
    )
