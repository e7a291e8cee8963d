"""Webhook sender (I/O): POSTs channel events to matching subscriptions, retrying with backoff.

Headers and signature follow bird-api.md 4.4; retries reuse the original timestamp and request
id (4.4, 4.7). Each delivery runs as a background task so API handlers never wait for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
import structlog

from birdsim.model import Attempt, ChannelEvent, Delivery
from birdsim.settings import MAX_DELIVERY_ATTEMPTS, SimulatorSettings
from birdsim.signing import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    bird_signature,
)
from birdsim.state import SimulatorState

log = structlog.get_logger("birdsim")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
_RESPONSE_BODY_CHARS = 2048


def retry_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Delay after failed attempt ``attempt`` (1-based): base, 2x base, 4x base, ... up to cap."""
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 40)))


def build_headers(
    *, request_id: str, timestamp: str, url: str, body: bytes, signing_key: str | None
) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "user-agent": "bird-simulator",
        REQUEST_ID_HEADER: request_id,
        TIMESTAMP_HEADER: timestamp,
    }
    # Without a signingKey Bird sends no signature (bird-api.md 4.4, [INF]).
    if signing_key:
        headers[SIGNATURE_HEADER] = bird_signature(signing_key, timestamp, url, body)
    return headers


class Deliverer:
    def __init__(
        self,
        state: Callable[[], SimulatorState],
        settings: SimulatorSettings,
        spawn: Spawn,
    ) -> None:
        self._state = state
        self._settings = settings
        self._spawn = spawn
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._settings.delivery_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def dispatch(self, event: ChannelEvent) -> list[Delivery]:
        """Queue ``event`` for every matching active subscription; returns the new deliveries."""
        state = self._state()
        body = orjson.dumps(event.envelope())
        deliveries = []
        for subscription in state.matching_subscriptions(event):
            request_id = str(uuid.uuid4())
            timestamp = str(int(time.time()))
            headers = build_headers(
                request_id=request_id,
                timestamp=timestamp,
                url=subscription.url,
                body=body,
                signing_key=subscription.signing_key,
            )
            delivery = state.add_delivery(
                subscription,
                event,
                request_id=request_id,
                timestamp=timestamp,
                body=body,
                signed=SIGNATURE_HEADER in headers,
            )
            deliveries.append(delivery)
            self._spawn(self._deliver(state, delivery, headers))
        return deliveries

    async def _deliver(
        self, state: SimulatorState, delivery: Delivery, headers: dict[str, str]
    ) -> None:
        settings = self._settings
        attempts = min(settings.delivery_max_attempts, MAX_DELIVERY_ATTEMPTS)
        loop = asyncio.get_running_loop()
        for number in range(1, attempts + 1):
            if delivery.subscription_id not in state.subscriptions:
                return  # deleted while waiting to retry: its logs are gone with it
            started, at = loop.time(), state.now()
            status, error, text = await self._post(delivery, headers)
            attempt = Attempt(number, at, (loop.time() - started) * 1000, status, error, text)
            gone = delivery.subscription_id not in state.subscriptions
            final = number == attempts or gone
            delay = retry_delay(
                number, settings.delivery_retry_base_s, settings.delivery_retry_cap_s
            )
            delivery.next_attempt_at = (
                None if attempt.succeeded or final else state.now() + timedelta(seconds=delay)
            )
            state.record_attempt(delivery, attempt, final=final)
            log.info(
                "webhook delivery",
                request_id=delivery.request_id,
                subscription_id=delivery.subscription_id,
                webhook_event=delivery.event,
                attempt=number,
                status=status,
                error=error,
                execution_status=delivery.execution_status,
            )
            if attempt.succeeded or final:
                return
            await asyncio.sleep(delay)

    async def _post(
        self, delivery: Delivery, headers: dict[str, str]
    ) -> tuple[int | None, str | None, str]:
        assert self._session is not None, "Deliverer.start() was not awaited"
        try:
            async with self._session.post(
                delivery.url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(_RESPONSE_BODY_CHARS)
                return response.status, None, raw.decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}".strip(": "), ""
