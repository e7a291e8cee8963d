"""``bridge.tasks``: a cancellation swallowed below (as aiokafka's ``stop()`` does) is
not lost."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bridge.tasks import raise_if_cancelling, stop_task


async def swallowing_stop(entered: asyncio.Event | None = None) -> None:
    """What aiokafka's ``stop()`` does: cancel an inner task and await it inside
    ``suppress(CancelledError)``, which also swallows a cancel aimed at the caller."""
    inner = asyncio.create_task(asyncio.sleep(0.05))
    if entered is not None:
        entered.set()
    with contextlib.suppress(asyncio.CancelledError):
        await inner


async def test_a_cancel_swallowed_below_is_repeated_until_the_task_stops() -> None:
    entered = asyncio.Event()
    rounds = 0

    async def loop() -> None:  # a consumer started and stopped, again and again
        nonlocal rounds
        while True:
            rounds += 1
            await swallowing_stop(entered)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    await entered.wait()
    task.cancel()  # lands in the swallowing stop
    await asyncio.sleep(0.3)
    assert not task.done()  # one cancel was lost: the loop ran on
    assert rounds >= 2
    await asyncio.wait_for(stop_task(task, recancel_s=0.1), 10)
    assert task.cancelled()


async def test_raise_if_cancelling_restores_a_swallowed_cancel() -> None:
    after: list[str] = []

    async def client_user() -> None:
        await swallowing_stop()
        raise_if_cancelling()
        after.append("ran on")

    task = asyncio.create_task(client_user())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []


async def test_a_handled_timeout_does_not_count_as_cancelling() -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    raise_if_cancelling()  # asyncio.timeout withdrew its cancel


async def test_the_callers_cancel_is_not_swallowed_by_stop_task() -> None:
    done = False

    async def stubborn() -> None:  # ignores cancels until told to stop
        while not done:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    inner = asyncio.create_task(stubborn())
    stopper = asyncio.create_task(stop_task(inner, recancel_s=0.1))
    await asyncio.sleep(0.25)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not inner.done()
    done = True
    await inner


async def test_a_failed_task_is_logged_and_the_stop_goes_on() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_task(task)  # no exception
    assert isinstance(task.exception(), RuntimeError)


class SlowStop:
    """A client whose stop takes a while (a consumer leaving its group)."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.stopped = False

    async def start(self) -> None:
        await asyncio.sleep(3600)  # still starting when the task is cancelled

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.sleep(0.1)
        self.stopped = True


async def test_a_start_cancelled_again_while_it_stops_still_stops_its_client() -> None:
    """``start_client`` cancelled, then cancelled again during the client's stop (as
    ``stop_task`` repeats a cancel): the stop runs to its end, then the task is cancelled.
    Cut short, it left the client's connections open."""
    from bridge.kafka import clients

    client = SlowStop()

    async def starting() -> None:
        await clients.start_client(client)

    original = clients.START_SETTLE_S
    clients.START_SETTLE_S = 0.01
    try:
        task = asyncio.create_task(starting())
        await asyncio.sleep(0.01)
        task.cancel()
        await client.stopping.wait()
        task.cancel()  # again, mid-stop
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        clients.START_SETTLE_S = original
    assert client.stopped


async def test_a_failed_start_stopped_while_cancelled_raises_the_cancellation() -> None:
    """A start that fails, with a cancel arriving during the stop that follows: the client
    is stopped and the cancellation, not the start's error, ends the task."""
    from bridge.kafka import clients

    class Failing(SlowStop):
        async def start(self) -> None:
            raise OSError("refused")

    client = Failing()

    async def starting() -> None:
        await clients.start_client(client)

    task = asyncio.create_task(starting())
    await client.stopping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.stopped
