"""Shared deadlines: ``asyncio.timeout`` semantics with one timer per slot, not per waiter.

Every webhook waits on Kafka under a deadline. ``asyncio.timeout`` creates a timer per
wait and cancels it afterwards (heap push, handle object, the loop's cleanup of cancelled
handles): about 7 % of the ingest path's CPU. Here waiters whose deadlines fall in the same
slot (``resolution`` seconds) share one timer; entering and leaving is a dict insert and
delete. A deadline fires at the end of its slot: up to ``resolution`` late, never early.

Used on the event loop only (I/O).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType


class Deadlines:
    """Deadlines for tasks of one event loop, rounded up to ``resolution`` seconds."""

    __slots__ = ("_loop", "_resolution", "_slots")

    def __init__(self, resolution: float = 0.05) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self._resolution = resolution
        self._loop: asyncio.AbstractEventLoop | None = None
        # slot number -> the waits ending in it (insertion-ordered, each once)
        self._slots: dict[int, dict[Deadline, None]] = {}

    def __len__(self) -> int:
        """Waits registered and not yet left or expired."""
        return sum(len(waits) for waits in self._slots.values())

    def after(self, seconds: float) -> Deadline:
        """``async with deadlines.after(s):`` raises ``TimeoutError`` in the block's task
        once ``s`` seconds (rounded up to the slot) have passed, like ``asyncio.timeout``."""
        return Deadline(self, seconds)

    def register(self, wait: Deadline, when: float) -> int:
        """Put ``wait`` in the slot of ``when`` (loop time); its slot number."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests run several): old timers are gone
            self._loop = loop
            self._slots = {}
        slot = math.ceil(when / self._resolution)
        waits = self._slots.get(slot)
        if waits is None:
            waits = self._slots[slot] = {}
            loop.call_at(slot * self._resolution, self._expire, slot)
        waits[wait] = None
        return slot

    def unregister(self, wait: Deadline, slot: int) -> None:
        waits = self._slots.get(slot)
        if waits is not None:
            waits.pop(wait, None)

    def _expire(self, slot: int) -> None:
        for wait in self._slots.pop(slot, {}):
            wait.expire()


class Deadline:
    """One wait under a shared deadline (an async context manager)."""

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_seconds", "_slot", "_task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._slot = 0
        self._expired = False
        self._cancelling = 0

    def expired(self) -> bool:
        return self._expired

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        self._slot = self._deadlines.register(self, loop.time() + self._seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._expired:
            self._deadlines.unregister(self, self._slot)
            return
        assert self._task is not None
        # As asyncio.timeout: our own cancellation becomes TimeoutError; one from outside
        # (shutdown) stays a cancellation.
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def expire(self) -> None:
        """The deadline passed: cancel the waiting task (it raises ``TimeoutError``)."""
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()
