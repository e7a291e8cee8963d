"""The one way the bridge waits before trying something again.

Every retry loop (connecting to Kafka, publishing through an outage, reading the ledger,
starting the command consumer, registering webhook subscriptions, posting a create again)
waits through a ``Retry``: exponential backoff with full jitter (``Backoff``, bridge/bird/
policy.py), capped, and never past a caller's deadline. Jitter keeps replicas that lost
Kafka together from coming back in step.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bridge.bird.policy import Backoff

# Kafka: the producer, the command consumer and the ledger's readers reconnect from 0.2 s
# up to 5 s between attempts.
KAFKA_BACKOFF = Backoff(base_s=0.2, cap_s=5.0)
# Bird's webhook subscriptions at start-up: a slower pace, Bird may be down for long.
SUBSCRIPTIONS_BACKOFF = Backoff(base_s=1.0, cap_s=60.0)


@dataclass
class Retry:
    """The waits of one retry loop: attempt 1, 2, ... each up to twice as long as the one
    before, at most ``backoff.cap_s``. ``reset()`` after a success starts over."""

    backoff: Backoff
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random | None = None
    attempt: int = field(default=0, init=False)

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next attempt (a server's ``Retry-After`` wins if longer)."""
        self.attempt += 1
        return self.backoff.delay(self.attempt, retry_after_s, rng=self.rng)

    async def wait(
        self, *, deadline: float | None = None, retry_after_s: float | None = None
    ) -> bool:
        """Wait before the next attempt. ``False`` (at once, without waiting) when the wait
        would reach ``deadline`` (a ``clock`` value): the caller gives up then."""
        delay = self.next_delay(retry_after_s)
        if deadline is not None and self.clock() + delay >= deadline:
            return False
        await self.sleep(delay)
        return True
