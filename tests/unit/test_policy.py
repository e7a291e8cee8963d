"""Retry backoff, Retry-After parsing, the outbound token bucket, offset tracking."""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime

import pytest

from bridge.bird.policy import Backoff, parse_retry_after
from bridge.commands.offsets import OffsetTracker
from bridge.ratelimit import SlidingWindow, TokenBucket


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (20, 1.0)]:
        delays = [backoff.delay(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range


def test_retry_after_wins_when_longer() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    assert backoff.delay(1, retry_after_s=3.0) == 3.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        (" 7 ", 7.0),
        ("-3", 0.0),
        ("Thu, 26 Nov 2026 12:00:10 GMT", 10.0),
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("99999999", 3600.0),
        ("nan", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value, now) == expected


def test_token_bucket_spends_its_burst_then_paces() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0)
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == pytest.approx(0.1)
    assert bucket.reserve(100.0) == pytest.approx(0.2)
    # A second later the debt is paid and the bucket refilled (capped at the burst).
    assert bucket.reserve(101.5) == 0.0


def test_token_bucket_never_exceeds_its_rate_over_a_window() -> None:
    bucket = TokenBucket(rate=45.0, burst=5.0)
    now, sends = 0.0, []
    for _ in range(500):
        now += bucket.reserve(now)
        sends.append(now)
    for i, start in enumerate(sends):
        in_window = [t for t in sends[i:] if t < start + 1.0]
        assert len(in_window) <= 50


def test_a_stalled_loop_wakes_reservations_together_and_the_window_holds_them() -> None:
    """20 calls a second allowed, paced as the Bird client paces them. The loop stalls for
    0.3 s twice, so calls reserved for different times wake at once: by the reservations
    alone one second would see more than 20 calls; with the window never more than 19."""
    limit = 20
    bucket = TokenBucket(rate=limit * 0.85, burst=limit * 0.1)
    due = [0.0] * 80
    for n in range(80):  # every call reserved at once, as 80 commands do
        due[n] = bucket.reserve(100.0)
    stalls = ((1.0, 1.3), (2.0, 2.3))

    def woken(t: float) -> float:  # a call due in a stall runs when the stall ends
        for start, end in stalls:
            if start <= t < end:
                return end
        return t

    def busiest(times: list[float]) -> int:
        return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)

    without = sorted(100.0 + woken(d) for d in due)
    assert busiest(without) > limit  # what Bird saw (and answered 429)

    # Each woken call asks the window and, told to wait, asks again then (in time order).
    window, sent, waiting = SlidingWindow(capacity=int(limit * 0.95)), [], list(without)
    heapq.heapify(waiting)
    while waiting:
        t = heapq.heappop(waiting)
        delay = window.delay(t)
        if delay > 0:
            heapq.heappush(waiting, t + delay)
        else:
            window.record(t)
            sent.append(t)
    assert busiest(sent) <= 19
    assert len(sent) == 80


def test_the_window_counts_only_the_last_seconds_events() -> None:
    window = SlidingWindow(capacity=2, seconds=1.0)
    assert window.delay(10.0) == 0.0
    window.record(10.0)
    window.record(10.4)
    assert window.delay(10.5) == pytest.approx(0.5)  # until 10.0 leaves the window
    assert window.delay(11.0) == 0.0
    window.record(11.0)
    assert window.delay(11.2) == pytest.approx(0.2)


def test_offsets_commit_only_past_contiguous_finished_records() -> None:
    tracker = OffsetTracker()
    assert tracker.committable() is None
    for offset in (10, 11, 12, 13):
        tracker.add(offset)
    tracker.done(11)
    tracker.done(13)
    assert tracker.committable() == 10
    tracker.done(10)
    assert tracker.committable() == 12
    tracker.committed = 12
    assert tracker.committable() is None
    tracker.done(12)
    assert tracker.committable() == 14
