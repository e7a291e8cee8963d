"""Stopping tasks and Kafka clients so that a cancellation is never lost (asyncio).

aiokafka's ``stop()`` and ``close()`` cancel inner tasks and await them inside
``contextlib.suppress(CancelledError)``: a cancellation aimed at the task that called
``stop()`` is swallowed there too, and that task runs on. Measured here: a loop that starts
and stops a consumer, cancelled once at a random moment, ran on in 1 of 30 tries; a
periodic reconciliation stopped that way never stops, and neither does the shutdown that
waits for it. Three rules follow, applied wherever the bridge stops something:

- ``raise_if_cancelling`` after an aiokafka stop raises the cancellation it swallowed
  (``bridge.kafka.clients.stop_client`` does, and every client is stopped with it);
- ``stop_task`` cancels once, and again (every ``RECANCEL_S``, with jitter) only while the
  task still runs: a cancel repeated at once would cut short the task's own cleanup (a
  consumer it is closing), one never repeated can be lost in a library;
- a cleanup that must finish is shielded from those repeats: a client whose start was
  cancelled is stopped to the end (``bridge.kafka.clients.stop_to_the_end``; a consumer
  that had joined its group can take longer to leave it than one ``RECANCEL_S``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import structlog

log = structlog.get_logger("bridge.tasks")

# How long one cancel is given (0.5x to 1.5x, at random) before it is repeated.
RECANCEL_S = 2.0


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` if the current task was asked to cancel and that request is
    still pending: someone below swallowed it (``asyncio.timeout`` and the bridge's own
    deadlines withdraw theirs with ``uncancel``, so a handled one does not count)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[Any] | None, *, recancel_s: float = RECANCEL_S) -> None:
    """Cancel ``task`` and return once it has finished, cancelling again about every
    ``recancel_s`` while it runs on. A task that had failed is logged, not raised: the
    stop goes on. A cancellation of the caller itself propagates as usual."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=recancel_s * random.uniform(0.5, 1.5))
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("task had failed", task=task.get_name(), error=repr(error))
