"""Retry and rate-limit rules for calls to Bird (pure; time is passed in).

bird-api.md 1: 429 means "not processed, retry later"; 5xx is "safe to retry with a
delay"; neither documents ``Retry-After``, so it is honoured when present and
exponential backoff with full jitter is used otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
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


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``reserve`` answers how long
    the caller must wait for its token (0 when one is available), and takes it."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def reserve(self, now: float) -> float:
        if self.updated == 0.0:
            self.updated = now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate
