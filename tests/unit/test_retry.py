"""The one retry helper (bridge/retry.py): jittered, capped, bounded by a deadline."""

from __future__ import annotations

import random

from bridge.bird.policy import Backoff
from bridge.retry import KAFKA_BACKOFF, Retry


class Recorder:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


async def test_waits_grow_jittered_up_to_the_cap() -> None:
    recorder = Recorder()
    retry = Retry(KAFKA_BACKOFF, sleep=recorder.sleep, rng=random.Random(7))
    for _ in range(12):
        assert await retry.wait()
    ceilings = [min(5.0, 0.2 * 2**n) for n in range(12)]
    assert all(0 <= s <= c for s, c in zip(recorder.slept, ceilings, strict=True))
    assert len(set(recorder.slept)) == 12  # jittered: no two waits alike
    assert max(recorder.slept[6:]) > 2.5  # and they do grow toward the cap


async def test_reset_starts_over() -> None:
    recorder = Recorder()
    retry = Retry(Backoff(1.0, 60.0), sleep=recorder.sleep, rng=random.Random(1))
    for _ in range(8):
        await retry.wait()
    retry.reset()
    await retry.wait()
    assert recorder.slept[-1] <= 1.0


async def test_a_wait_that_would_pass_the_deadline_is_not_taken() -> None:
    recorder = Recorder()
    retry = Retry(Backoff(1.0, 1.0), sleep=recorder.sleep, clock=recorder.clock)
    # Every wait is at most 1 s; with 0.5 s left, some wait would pass the deadline.
    outcomes = [await retry.wait(deadline=recorder.now + 0.5) for _ in range(50)]
    assert False in outcomes
    assert len(recorder.slept) == outcomes.count(True)
    assert all(s < 0.5 for s in recorder.slept)


async def test_retry_after_wins_when_longer() -> None:
    recorder = Recorder()
    retry = Retry(Backoff(0.1, 0.2), sleep=recorder.sleep)
    assert await retry.wait(retry_after_s=7.0)
    assert recorder.slept == [7.0]
