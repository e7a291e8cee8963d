"""How old a webhook's event is when it arrives: receipt time minus Bird's timestamp. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.ingest.normalize import event_time


def bird_timestamp(body: Mapping[str, Any]) -> datetime | None:
    """Bird's time of the event: the payload's ``updatedAt``, else its ``createdAt``, each
    only when it is an RFC 3339 timestamp with a zone offset (as the CloudEvent's ``time``)."""
    payload = body.get("payload")
    if not isinstance(payload, Mapping):
        return None
    found = event_time(payload.get("updatedAt")) or event_time(payload.get("createdAt"))
    return datetime.fromisoformat(found) if found is not None else None


def event_age_s(body: Mapping[str, Any], received_at: datetime) -> float | None:
    """Seconds from Bird's timestamp to ``received_at`` (aware); a timestamp in the future
    (clock skew) gives 0; ``None`` without a usable timestamp."""
    stamp = bird_timestamp(body)
    if stamp is None:
        return None
    return max(0.0, (received_at - stamp).total_seconds())
