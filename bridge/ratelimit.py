"""Token buckets and sliding windows (pure; time is passed in): pacing calls out,
limiting clients in."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field


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
        self._refill(now)
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def try_acquire(self, now: float) -> float:
        """Take a token if one is there (0.0); else take nothing and say how long until one is."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def _refill(self, now: float) -> None:
        if self.updated == 0.0:
            self.updated = now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now


@dataclass
class SlidingWindow:
    """At most ``capacity`` events in any ``seconds`` of the times they really happen.

    A token bucket's reservations are spaced in time, but their callers run when the event
    loop gets to them: after a stall, several reserved calls wake at once and go out
    together. Checked after the bucket's wait, this window keeps the calls actually made
    under a limit counted as Bird counts it (any one-second window)."""

    capacity: int
    seconds: float = 1.0
    times: deque[float] = field(default_factory=deque)

    def delay(self, now: float) -> float:
        """How long until one more event fits (0.0: it fits now)."""
        times = self.times
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) < self.capacity:
            return 0.0
        return times[0] + self.seconds - now

    def record(self, now: float) -> None:
        self.times.append(now)


class KeyedLimiter:
    """One bucket per key (a client address), the least recently seen forgotten beyond
    ``max_keys`` so a flood of addresses cannot grow memory without bound."""

    def __init__(self, rate: float, *, burst: float | None = None, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def try_acquire(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=self.rate, burst=self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.try_acquire(now)
