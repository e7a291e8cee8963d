"""Bird webhook body -> channel-event CloudEvent (contract sections 2 and 9). Pure.

Unknown services, events, fields and status values pass through untouched in
``data.raw``; nothing here rejects a well-formed JSON object, and whatever the body
holds, the event is one the CloudEvents SDKs accept.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
from msgspec import UNSET, UnsetType

from bridge.errors import BadPayload
from bridge.events import Record, rfc3339, to_record
from bridge.messages import DATA_CONTENT_TYPE, SPEC_VERSION, ChannelEvent, ChannelEventData
from bridge.messages import Origin as Origin

# Normalized field (ChannelEventData's) -> where Bird's channel payload carries it
# (bird-api.md 3, 4.6).
_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("channel_id", ("id", "channelId")),
    ("connector_id", ("connectorId",)),
    ("workspace_id", ("workspaceId",)),
    ("platform", ("platformId", "platform")),
    ("status", ("status",)),
    ("identifier", ("identifier",)),
    ("name", ("name",)),
    ("created_at", ("createdAt",)),
    ("updated_at", ("updatedAt",)),
)


def parse_body(body: bytes) -> dict[str, Any]:
    """The webhook body as a JSON object, or ``BadPayload`` saying why not."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadPayload(f"body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadPayload(f"body must be a JSON object, got {type(parsed).__name__}")
    return parsed


def event_id(request_id: str | None, raw_body: bytes) -> str:
    """Bird's request id (stable across its retries), else a hash of the body."""
    return request_id or hashlib.sha256(raw_body).hexdigest()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# RFC 3339 section 5.6 date-time, upper-case "T" and "Z", the offset required.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


def event_time(value: object) -> str | None:
    """``value`` if it is an RFC 3339 timestamp with a zone offset (a real date and time),
    else None: a CloudEvent's ``time`` must be one, and Bird's field is only text to us."""
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        return None
    try:
        datetime.fromisoformat(value)  # month 13, hour 24, offset +24:00, ...
    except ValueError:
        return None
    return value


# Bird's time of an event: the text (a CloudEvent's ``time``) and the moment it names.
BirdTime = tuple[str, datetime]


def bird_time(payload: Mapping[str, Any]) -> BirdTime | None:
    """Bird's time of the event in a channel payload: ``updatedAt``, else ``createdAt``, each
    only when ``event_time`` accepts it. Parsed once per webhook: the event's ``time`` and
    the event-age metric both use it."""
    for source in ("updatedAt", "createdAt"):
        value = payload.get(source)
        if isinstance(value, str) and _DATE_TIME.fullmatch(value):
            try:
                return value, datetime.fromisoformat(value)
            except ValueError:
                continue
    return None


# Few workspaces send webhooks: the percent-encoding of each is worked out once.
@functools.lru_cache(maxsize=1024)
def event_source(workspace_id: str | None) -> str:
    """``bird:workspaces/<id>``, the id percent-encoded so the source is a URI-reference."""
    return f"bird:workspaces/{quote(workspace_id, safe='')}" if workspace_id else "bird"


def normalize_event(
    body: Mapping[str, Any],
    *,
    raw_body: bytes,
    request_id: str | None,
    default_workspace_id: str | None,
    received_at: datetime,
    origin: Origin,
    trace: tuple[tuple[str, bytes], ...] = (),
    stamp: BirdTime | UnsetType | None = UNSET,
) -> Record:
    """Build the Kafka record (key = channel id, else workspace id) for one webhook, or for
    one channel state found by reconciliation (``origin``, the ``birdorigin`` extension).
    ``trace`` holds the W3C Trace Context headers the record carries (``trace.py``);
    ``stamp`` is ``bird_time`` of the payload when the caller has it already."""
    payload = body.get("payload")
    fields = payload if isinstance(payload, Mapping) else {}
    if isinstance(stamp, UnsetType):
        stamp = bird_time(fields)
    found: dict[str, Any] = {}
    for name, sources in _FIELDS:
        for source in sources:
            value = fields.get(source)
            if value is not None:
                found[name] = value
                break
    if "workspace_id" not in found and default_workspace_id:
        found["workspace_id"] = default_workspace_id
    data = ChannelEventData(raw=payload if "payload" in body else dict(body), **found)

    event_name = _text(body.get("event")) or "unknown"
    service = _text(body.get("service"))
    workspace_id = _text(found.get("workspace_id"))
    channel_id = _text(found.get("channel_id"))
    time = stamp[0] if stamp is not None else rfc3339(received_at)
    event = ChannelEvent(
        specversion=SPEC_VERSION,
        id=event_id(request_id, raw_body),
        source=event_source(workspace_id),
        type=f"com.bird.{event_name}",
        subject=channel_id if channel_id is not None else UNSET,
        time=time,
        datacontenttype=DATA_CONTENT_TYPE,
        birdservice=service if service else UNSET,
        birdorigin=origin,
        data=data,
    )
    try:
        return to_record(
            event, key=channel_id or workspace_id, correlation_id=request_id, trace=trace
        )
    except (orjson.JSONEncodeError, RecursionError):
        # orjson reads 1024 levels of nesting but writes at most 254; msgspec.to_builtins
        # (events.encode) stops at Python's recursion limit first when it is deeper still.
        raise BadPayload("body nests too deeply to be published") from None
