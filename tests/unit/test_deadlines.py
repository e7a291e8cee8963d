"""Shared deadlines (bridge.deadlines): asyncio.timeout's behaviour, one timer per slot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.deadlines import Deadlines


def count_timers(loop: asyncio.AbstractEventLoop) -> list[float]:
    """When each timer of a ``Deadlines`` set on ``loop`` from now on is due (by wrapping
    the instance's ``call_at``)."""
    calls: list[float] = []
    original = loop.call_at

    def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if getattr(callback, "__qualname__", "") == "Deadlines._expire":
            calls.append(when)
        return original(when, callback, *args, **kwargs)

    loop.call_at = call_at  # type: ignore[method-assign,assignment]
    return calls


async def test_a_wait_past_its_deadline_raises_timeout_error_late_by_at_most_one_slot() -> None:
    deadlines = Deadlines(resolution=0.05)
    loop = asyncio.get_running_loop()
    timers = count_timers(loop)
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with deadlines.after(0.1):
            await asyncio.sleep(10)
    assert loop.time() - started >= 0.1  # never early
    # Its timer is set for the end of the deadline's slot: late by less than one slot.
    assert len(timers) == 1
    assert 0 <= timers[0] - (started + 0.1) <= 0.05
    assert len(deadlines) == 0


async def test_a_wait_that_ends_in_time_is_left_and_never_cancelled_later() -> None:
    deadlines = Deadlines(resolution=0.01)
    async with deadlines.after(0.05) as deadline:
        await asyncio.sleep(0)
    assert len(deadlines) == 0
    await asyncio.sleep(0.1)  # past the slot: its timer finds nothing to cancel
    assert not deadline.expired()
    await asyncio.sleep(0)  # this task was not cancelled either


async def test_waits_in_one_slot_share_one_timer() -> None:
    deadlines = Deadlines(resolution=10.0)  # every wait below ends in the same slot
    timers = count_timers(asyncio.get_running_loop())
    gate = asyncio.Event()

    async def wait() -> None:
        async with deadlines.after(5.0):
            await gate.wait()

    tasks = [asyncio.create_task(wait()) for _ in range(100)]
    await asyncio.sleep(0)
    assert len(deadlines) == 100
    gate.set()
    await asyncio.gather(*tasks)
    assert len(deadlines) == 0
    assert len(timers) == 1  # asyncio.timeout would have made 100


async def test_many_short_waits_make_at_most_one_timer_per_slot() -> None:
    deadlines = Deadlines(resolution=0.05)
    timers = count_timers(asyncio.get_running_loop())
    for _ in range(1000):
        async with deadlines.after(5.0):
            await asyncio.sleep(0)
    assert len(set(timers)) == len(timers) <= 3  # the run takes well under 0.1 s


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(resolution=0.01)
    started = asyncio.Event()

    async def wait() -> None:
        async with deadlines.after(10):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(wait())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


async def test_an_expired_wait_whose_result_is_ready_still_times_out_like_asyncio() -> None:
    deadlines = Deadlines(resolution=0.01)
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        async with deadlines.after(0.02):
            await future
    assert not future.done() or future.cancelled()


def test_a_new_event_loop_gets_its_own_timers() -> None:
    deadlines = Deadlines(resolution=0.01)

    async def expire() -> None:
        with pytest.raises(TimeoutError):
            async with deadlines.after(0.02):
                await asyncio.sleep(1)

    asyncio.run(expire())
    asyncio.run(expire())  # the first loop's slots (and timers) are gone with it


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Deadlines(resolution=0)
