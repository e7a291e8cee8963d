"""Delivery bookkeeping: each webhook delivery (event id) is published once.

Beside the dedupe window it feeds: a delivery Kafka acknowledged is remembered there; one
whose publish is under way is in flight, and a duplicate that comes meanwhile waits for
it instead of publishing a second copy. No HTTP here: the handler maps the outcome and
``PublishUnavailable`` to its answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from bridge.errors import PublishUnavailable
from bridge.events import Record
from bridge.ingest.dedupe import DedupeWindow

# Called with the producer's delivery future when a publish gave up waiting for it.
OnTimeout = Callable[["asyncio.Future[Any]"], None]
# Publish one record; call ``on_timeout`` if giving up while the record is in the producer.
Publish = Callable[[Record, OnTimeout], Awaitable[object]]
Outcome = Literal["published", "duplicate"]


class Deliveries:
    """Publish each delivery once; concurrent duplicates wait on the first one's publish."""

    def __init__(
        self,
        publish: Publish,
        window: DedupeWindow,
        *,
        wait_timeout_s: float,
        settle_timeout_s: float,
        on_duplicate: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publish = publish
        self.window = window
        # How long a duplicate waits for the same delivery's publish.
        self.wait_timeout_s = wait_timeout_s
        # How long a record in the producer may still take to settle after its request
        # gave up: the producer's own retries end within a few request timeouts.
        self.settle_timeout_s = settle_timeout_s
        self.on_duplicate = on_duplicate
        self.clock = clock
        self.in_flight: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        """Deliveries in flight."""
        return len(self.in_flight)

    async def publish_once(self, event_id: str, record: Record) -> Outcome:
        """Publish ``record`` unless this delivery was published already; return the outcome.

        A delivery whose record entered the producer stays in flight until Kafka settles
        it, also after its request gave up (503): a retry that comes meanwhile waits for
        that record instead of publishing a second copy. A record that never entered the
        producer (its buffer full in an outage) is given up with its request."""
        if self.window.contains(event_id, self.clock()):
            self.on_duplicate()
            return "duplicate"
        pending = self.in_flight.get(event_id)
        if pending is not None:
            try:
                async with asyncio.timeout(self.wait_timeout_s):
                    await asyncio.wait([pending])
            except TimeoutError:
                raise PublishUnavailable("the same delivery is still on its way") from None
            if pending.cancelled():
                raise PublishUnavailable("the same delivery could not be published")
            self.on_duplicate()
            return "duplicate"
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.in_flight[event_id] = outcome
        handed_over = False

        def on_its_way(delivery: asyncio.Future[Any]) -> None:
            nonlocal handed_over
            handed_over = True
            self._follow(event_id, outcome, delivery)

        try:
            await self.publish(record, on_its_way)
        except BaseException:
            if not handed_over:
                self._settle(event_id, outcome, published=False)
            raise
        self._settle(event_id, outcome, published=True)
        return "published"

    def _follow(
        self, event_id: str, outcome: asyncio.Future[None], delivery: asyncio.Future[Any]
    ) -> None:
        """Keep a 503'd delivery in flight until Kafka settles its record (or the bound)."""
        give_up = asyncio.get_running_loop().call_later(
            self.settle_timeout_s, self._settle, event_id, outcome, False
        )

        def settled(done: asyncio.Future[Any]) -> None:
            give_up.cancel()
            ok = not done.cancelled() and done.exception() is None
            self._settle(event_id, outcome, published=ok)

        delivery.add_done_callback(settled)

    def _settle(self, event_id: str, outcome: asyncio.Future[None], published: bool) -> None:
        if outcome.done():
            return
        if self.in_flight.get(event_id) is outcome:
            del self.in_flight[event_id]
        if published:
            self.window.remember(event_id, self.clock())
            outcome.set_result(None)
        else:
            outcome.cancel()
