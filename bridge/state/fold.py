"""The channel-state fold (contract section 10). Pure.

``decide`` answers whether a channel event moves a channel's known state forward;
``state_record`` builds the ``com.bird.channel.state`` record written to the compacted
state topic. A state never moves backwards by Bird's ``updatedAt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from bridge.events import Record, cloud_event, to_record

STATE_TYPE = "com.bird.channel.state"
CHANNEL_TYPES = ("com.bird.channel.created", "com.bird.channel.updated")

Decision = Literal["write", "older", "same", "unordered", "not_a_channel"]


@dataclass(frozen=True, slots=True)
class Known:
    """What the fold (and reconciliation) remembers of one channel's current state."""

    updated_at: str | None
    status: str | None


def parse_time(value: object) -> datetime | None:
    """Bird's ``updatedAt`` as an aware datetime, None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def known_of(data: Mapping[str, Any]) -> Known:
    status = data.get("status")
    updated = data.get("updatedAt")
    return Known(
        updated_at=updated if isinstance(updated, str) else None,
        status=status if isinstance(status, str) else None,
    )


def decide(current: Known | None, candidate: Known) -> Decision:
    """Whether ``candidate`` replaces ``current``.

    Newer ``updatedAt`` wins. An equal ``updatedAt`` wins only with another status (Bird's
    own answer, found by reconciliation, beats what a webhook said at the same moment);
    the same state again is skipped, so a redelivered event writes nothing. A candidate
    without a readable ``updatedAt`` cannot be ordered: it is written only for a channel
    not known yet."""
    if current is None:
        return "write"
    new_time = parse_time(candidate.updated_at)
    if new_time is None:
        return "unordered"
    old_time = parse_time(current.updated_at)
    if old_time is None or new_time > old_time:
        return "write"
    if new_time < old_time:
        return "older"
    return "same" if candidate.status == current.status else "write"


def channel_event(value: bytes | None) -> dict[str, Any] | None:
    """The CloudEvent in a channel-events record if it is a channel event with a channel
    id (``subject``) and an object ``data``; None for anything else."""
    if not value:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("type") not in CHANNEL_TYPES:
        return None
    subject, data = event.get("subject"), event.get("data")
    if not isinstance(subject, str) or not subject or not isinstance(data, dict):
        return None
    return event


def state_record(event: Mapping[str, Any]) -> Record:
    """The state record of a channel event: key and ``subject`` = channel id, ``data`` = the
    event's normalized fields, ``time`` and ``source`` as the event's."""
    data = event["data"]
    channel_id = str(event["subject"])
    known = known_of(data)
    extensions = {"birdorigin": event["birdorigin"]} if "birdorigin" in event else None
    state = cloud_event(
        event_id=f"state:{channel_id}:{known.updated_at or event.get('id', '')}:{known.status}",
        source=str(event.get("source") or "bird"),
        type_=STATE_TYPE,
        subject=channel_id,
        time=str(event["time"]),
        data=data,
        extensions=extensions,
    )
    return to_record(state, key=channel_id, correlation_id=None)


def read_state(value: bytes | None) -> tuple[str, Known] | None:
    """A state record's channel id and known state; None for a tombstone or anything else."""
    if not value:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("type") != STATE_TYPE:
        return None
    subject, data = event.get("subject"), event.get("data")
    if not isinstance(subject, str) or not isinstance(data, dict):
        return None
    return subject, known_of(data)
