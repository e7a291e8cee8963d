"""Reconciliation plan: Bird's channels vs the known state -> the events to publish. Pure.

A channel the state does not know becomes a ``channel.created`` event, one Bird knows
newer (or, at the same ``updatedAt``, with another status) a ``channel.updated`` event;
both are built by ``normalize_event`` exactly like webhook events, with ``birdorigin`` =
``reconcile`` and the id ``reconcile:<channelId>:<updatedAt>``. What the fold would not
write (an older state) is not published, so a second run finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from bridge.events import Record
from bridge.ingest.normalize import normalize_event
from bridge.state.fold import Known, decide, known_of


@dataclass
class Plan:
    workspace_id: str
    seen: int = 0
    created: int = 0
    updated: int = 0
    unreadable: int = 0
    records: list[Record] = field(default_factory=list)

    @property
    def drift(self) -> int:
        return self.created + self.updated


def reconcile_id(channel_id: str, updated_at: str | None) -> str:
    return f"reconcile:{channel_id}:{updated_at or ''}"


def plan(
    workspace_id: str,
    channels: Iterable[Mapping[str, Any]],
    known: Mapping[str, Known],
    *,
    now: datetime,
) -> Plan:
    result = Plan(workspace_id)
    for channel in channels:
        result.seen += 1
        channel_id = channel.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            result.unreadable += 1
            continue
        candidate = known_of(channel)
        current = known.get(channel_id)
        if decide(current, candidate) != "write":
            continue
        name = "channel.created" if current is None else "channel.updated"
        body = {"service": "channels", "event": name, "payload": dict(channel)}
        request_id = reconcile_id(channel_id, candidate.updated_at)
        record = normalize_event(
            body,
            raw_body=orjson.dumps(body),
            request_id=request_id,
            default_workspace_id=workspace_id,
            received_at=now,
            origin="reconcile",
        )
        result.records.append(record)
        if current is None:
            result.created += 1
        else:
            result.updated += 1
    return result
