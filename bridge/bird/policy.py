"""Retry rules for calls to Bird (pure; time is passed in).

bird-api.md 1: 429 means "not processed, retry later"; 5xx is "safe to retry with a
delay"; neither documents ``Retry-After``, so it is honoured when present and
exponential backoff with full jitter is used otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Backoff:
    base_s: float
    cap_s: float

    def delay(
        self, attempt: int, retry_after_s: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): full jitter, capped;
        a server's ``Retry-After`` wins when it asks for longer."""
        ceiling = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        jittered = (rng or random).uniform(0, ceiling)
        if retry_after_s is not None:
            return max(retry_after_s, jittered)
        return jittered


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return min(seconds, 3600.0)


def status_class(status: int | None) -> str:
    """The metric label of one Bird call: ``2xx``, ``3xx``, ``4xx``, ``429`` (Bird's "retry
    later", apart from the other 4xx), ``5xx``, or ``error`` when Bird gave no HTTP answer
    (``None``: connection error, timeout) or one outside 200..599."""
    if status is None or not 200 <= status <= 599:
        return "error"
    if status == 429:
        return "429"
    return f"{status // 100}xx"
