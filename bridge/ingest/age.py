"""How old a webhook's event is when it arrives: receipt time minus Bird's timestamp. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.ingest.normalize import bird_time


def bird_timestamp(body: Mapping[str, Any]) -> datetime | None:
    """Bird's time of the event: the payload's ``updatedAt``, else its ``createdAt``, each
    only when it is an RFC 3339 timestamp with a zone offset (as the CloudEvent's ``time``)."""
    payload = body.get("payload")
    if not isinstance(payload, Mapping):
        return None
    found = bird_time(payload)
    return found[1] if found is not None else None


def age_s(stamp: datetime | None, received_at: datetime) -> float | None:
    """Seconds from ``stamp`` (Bird's time of the event, aware) to ``received_at``; a stamp
    in the future (clock skew) gives 0; ``None`` without a stamp."""
    if stamp is None:
        return None
    return max(0.0, (received_at - stamp).total_seconds())


def event_age_s(body: Mapping[str, Any], received_at: datetime) -> float | None:
    """``age_s`` of the body's ``bird_timestamp``."""
    return age_s(bird_timestamp(body), received_at)
