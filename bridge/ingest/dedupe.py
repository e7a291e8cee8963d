"""A bounded window of recently published webhook ids (count and age), for replay protection.

Pure: the caller passes ``now``. Only ids whose publish Kafka acknowledged are
remembered, so a delivery that got a 503 is published when Bird retries it.
"""

from __future__ import annotations

from collections import OrderedDict


class DedupeWindow:
    def __init__(self, *, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> expiry, oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def contains(self, event_id: str, now: float) -> bool:
        self._expire(now)
        return event_id in self._seen

    def remember(self, event_id: str, now: float) -> None:
        if self.max_entries == 0:
            return
        self._seen[event_id] = now + self.ttl_s
        self._seen.move_to_end(event_id)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > now:
                return
            del seen[oldest]
