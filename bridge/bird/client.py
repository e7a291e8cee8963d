"""The aiohttp client for Bird's Connectors, Channels and Notifications APIs (I/O).

One shared session; ``Authorization: AccessKey``, with several workspaces (contract 12)
the key of the workspace's organization; per-request timeouts; an outbound rate limiter
per workspace; retries with backoff within the caller's deadline. Every
failure leaves here as a ``BirdError``: ``BirdRejected`` (4xx), ``BirdUnavailable`` (429,
no connection made, deadline passed) or ``BirdOutcomeUnknown`` (timeout, 5xx, connection
lost mid-request). Non-idempotent calls (create) are retried only where Bird cannot have
acted on them; ``BirdOutcomeUnknown`` is raised at once so the caller can look before it
creates again.

A call given a trace context sends it (``traceparent``, ``tracestate``) with every
request; with spans exported each request is a client span and carries that span's id.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import structlog

from bridge import __version__
from bridge.bird.policy import Backoff, parse_retry_after, status_class
from bridge.config import BirdConfig
from bridge.errors import BirdError, BirdOutcomeUnknown, BirdRejected, BirdUnavailable
from bridge.metrics import Metrics
from bridge.ratelimit import SlidingWindow, TokenBucket
from bridge.retry import Retry
from bridge.tracecontext import TraceContext
from bridge.tracing import SpanScope, Tracing

log = structlog.get_logger("bridge.bird")

JSON = dict[str, Any]

# A retry is not started with less time than this left before the deadline: an attempt cut
# short by the deadline turns Bird's last answer (a 429, a 503) into "did not answer in
# time", and a create into an unknown outcome that has to be looked up.
MIN_RETRY_BUDGET_S = 0.25


def _error_from_response(status: int, body: bytes, operation: str) -> BirdError:
    """Bird's error body ``{code, message, details}`` (bird-api.md 1), tolerating anything."""
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    bird_code = parsed.get("code") if isinstance(parsed.get("code"), str) else None
    message = parsed.get("message") if isinstance(parsed.get("message"), str) else None
    details = parsed.get("details") if isinstance(parsed.get("details"), dict) else {}
    cls: type[BirdError] = BirdRejected
    if status >= 500:
        cls = BirdOutcomeUnknown
    elif status == 429:
        cls = BirdUnavailable
    return cls(
        f"{operation}: Bird answered {status}" + (f": {message}" if message else ""),
        bird_status=status,
        details=details,
        bird_code=bird_code,
    )


class BirdClient:
    def __init__(
        self, config: BirdConfig, metrics: Metrics, *, tracing: Tracing | None = None
    ) -> None:
        if config.access_key is None and not config.workspaces_from_file:
            raise ValueError("BirdClient needs an access key")
        self.config = config
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self.base = config.api_url.rstrip("/")
        self._host = urlsplit(self.base).hostname or ""
        self.backoff = Backoff(config.retry_base_s, config.retry_cap_s)
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"channel-bridge/{__version__}",
        }
        # One access key for every workspace (v1), or each workspace its own (contract 12).
        self._auth: dict[str, dict[str, str]] | None = None
        if config.workspaces_from_file:
            self._auth = {
                w.id: {"Authorization": f"AccessKey {w.access_key.reveal()}"}
                for w in config.workspaces
                if w.access_key is not None
            }
        elif config.access_key is not None:
            self._headers["Authorization"] = f"AccessKey {config.access_key.reveal()}"
        self._session: aiohttp.ClientSession | None = None
        self._pacings: dict[tuple[str, str], tuple[TokenBucket, SlidingWindow]] = {}

    async def __aenter__(self) -> BirdClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s),
                connector=aiohttp.TCPConnector(limit=200),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- rate limiting -------------------------------------------------------------

    def _pacing(self, workspace: str, method: str) -> tuple[TokenBucket, SlidingWindow]:
        kind = "get" if method == "GET" else "write"
        key = (workspace, kind)
        pacing = self._pacings.get(key)
        if pacing is None:
            limit = self.config.rate_get_per_s if kind == "get" else self.config.rate_post_per_s
            # 85 % of the limit plus a 10 % burst: even the first second, and a window
            # that Bird starts a little late, stays under the limit. The window holds the
            # calls actually made to the same 95 % whenever their callers wake.
            pacing = self._pacings[key] = (
                TokenBucket(rate=limit * 0.85, burst=max(1.0, limit * 0.1)),
                SlidingWindow(capacity=max(1, math.floor(limit * 0.95))),
            )
        return pacing

    async def _throttle(self, workspace: str, method: str) -> None:
        bucket, window = self._pacing(workspace, method)
        wait = bucket.reserve(time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        # Reservations wake when the loop gets to them, several at once after a stall:
        # the window holds the calls actually made under the limit.
        while True:
            delay = window.delay(time.monotonic())
            if delay <= 0:
                break
            await asyncio.sleep(delay)
        window.record(time.monotonic())

    # --- one request, with retries -----------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        workspace: str,
        operation: str,
        deadline: float,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
        trace: TraceContext | None = None,
    ) -> tuple[int, Any]:
        """Call Bird until it answers 2xx, a final error, or ``deadline`` (monotonic) passes.
        Each request carries ``trace`` (one client span per request when exporting)."""
        assert self._session is not None, "BirdClient.start() first"
        auth: dict[str, str] | None = None
        if self._auth is not None:
            auth = self._auth.get(workspace)
            if auth is None:
                raise BirdRejected(f"{operation}: workspace {workspace!r} is not configured")
        retry = Retry(self.backoff)
        last: BirdError | None = None  # Bird's last answer says more than "deadline passed"
        while True:
            await self._throttle(workspace, method)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise last or BirdUnavailable(
                    f"{operation}: deadline passed before Bird could be called"
                )
            started = time.perf_counter()
            status_label = "error"
            answered: int | None = None
            retry_after: float | None = None
            span = None
            headers = auth
            if trace is not None:
                span = self._span(method, path, operation, trace, retry.attempt)
                assert span.context is not None
                headers = {**(auth or {}), **span.context.http_headers()}
            try:
                timeout = aiohttp.ClientTimeout(total=min(self.config.request_timeout_s, remaining))
                async with self._session.request(
                    method,
                    self.base + path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=timeout,
                ) as response:
                    body = await response.read()
                    status_label = str(response.status)
                    answered = response.status
                    if 200 <= response.status < 300:
                        return response.status, orjson.loads(body) if body else None
                    error = _error_from_response(response.status, body, operation)
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except TimeoutError:
                status_label = "timeout"
                error = BirdOutcomeUnknown(f"{operation}: Bird did not answer in time")
            except aiohttp.ClientConnectorError:
                status_label = "connect_error"
                error = BirdUnavailable(f"{operation}: cannot connect to Bird")
            except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
                status_label = "connection_lost"
                answered = None  # a body cut short or unreadable is no usable answer
                error = BirdOutcomeUnknown(
                    f"{operation}: connection to Bird failed ({type(exc).__name__})"
                )
            finally:
                self.metrics.bird_requests.labels(operation, status_class(answered)).observe(
                    time.perf_counter() - started
                )
                if span is not None:
                    if status_label.isdigit():
                        span.set("http.response.status_code", int(status_label))
                    span.end(None if status_label.startswith("2") else status_label)
            # Only what Bird cannot have acted on is retried for a non-idempotent call.
            safe = idempotent or not isinstance(error, BirdOutcomeUnknown)
            if not error.retryable or not safe:
                raise error
            delay = retry.next_delay(retry_after)
            budget = min(MIN_RETRY_BUDGET_S, self.config.request_timeout_s)
            if time.monotonic() + delay + budget >= deadline:
                raise error
            last = error
            self.metrics.bird_retries.labels(operation, status_class(answered)).inc()
            log.info(
                "retrying bird call",
                operation=operation,
                status=status_label,
                attempt=retry.attempt,
                delay_s=round(delay, 3),
            )
            await retry.sleep(delay)

    def _span(
        self, method: str, path: str, operation: str, trace: TraceContext, attempt: int
    ) -> SpanScope:
        """The client span of one request (semantic conventions for HTTP; never a header)."""
        return self.tracing.span(
            f"{method} {operation}",
            trace,
            kind="client",
            attributes={
                "http.request.method": method,
                "url.full": self.base + path,
                "server.address": self._host,
                "http.request.resend_count": attempt,
                "bridge.bird.operation": operation,
            },
        )

    # --- Connectors (bird-api.md 2) --------------------------------------------------

    async def create_connector(
        self,
        workspace: str,
        body: Mapping[str, Any],
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> JSON:
        _, connector = await self.request(
            "POST",
            f"/workspaces/{_seg(workspace)}/connectors",
            workspace=workspace,
            operation="create_connector",
            deadline=deadline,
            json=body,
            idempotent=False,
            trace=trace,
        )
        return dict(connector)

    async def get_connector(
        self,
        workspace: str,
        connector_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> JSON:
        _, connector = await self.request(
            "GET",
            f"/workspaces/{_seg(workspace)}/connectors/{_seg(connector_id)}",
            workspace=workspace,
            operation="get_connector",
            deadline=deadline,
            trace=trace,
        )
        return dict(connector)

    async def delete_connector(
        self,
        workspace: str,
        connector_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> bool:
        """Delete; ``False`` when it did not exist (404)."""
        try:
            await self.request(
                "DELETE",
                f"/workspaces/{_seg(workspace)}/connectors/{_seg(connector_id)}",
                workspace=workspace,
                operation="delete_connector",
                deadline=deadline,
                trace=trace,
            )
        except BirdRejected as exc:
            if exc.bird_status == 404:
                return False
            raise
        return True

    async def list_connectors(
        self,
        workspace: str,
        template_ref: str | None,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> list[JSON]:
        """Every page, following ``nextPageToken`` (absent or empty means done)."""
        params: dict[str, str] = {"limit": "100"}
        if template_ref:
            params["templateRef"] = template_ref
        return await self._all_pages(
            f"/workspaces/{_seg(workspace)}/connectors",
            workspace,
            "list_connectors",
            params,
            deadline,
            trace,
        )

    async def get_channel(
        self,
        workspace: str,
        channel_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> JSON:
        _, channel = await self.request(
            "GET",
            f"/workspaces/{_seg(workspace)}/channels/{_seg(channel_id)}",
            workspace=workspace,
            operation="get_channel",
            deadline=deadline,
            trace=trace,
        )
        return dict(channel)

    # --- Webhook subscriptions (bird-api.md 4) ----------------------------------------

    def _subscriptions(self, organization: str, workspace: str) -> str:
        org, ws = _seg(organization), _seg(workspace)
        return f"/organizations/{org}/workspaces/{ws}/webhook-subscriptions"

    async def list_subscriptions(
        self, organization: str, workspace: str, *, deadline: float
    ) -> list[JSON]:
        return await self._all_pages(
            self._subscriptions(organization, workspace),
            workspace,
            "list_subscriptions",
            {"limit": "100"},
            deadline,
        )

    async def create_subscription(
        self, organization: str, workspace: str, body: Mapping[str, Any], *, deadline: float
    ) -> JSON:
        _, created = await self.request(
            "POST",
            self._subscriptions(organization, workspace),
            workspace=workspace,
            operation="create_subscription",
            deadline=deadline,
            json=body,
            idempotent=False,
        )
        return dict(created)

    async def update_subscription(
        self,
        organization: str,
        workspace: str,
        subscription_id: str,
        body: Mapping[str, Any],
        *,
        deadline: float,
    ) -> JSON:
        _, updated = await self.request(
            "PATCH",
            f"{self._subscriptions(organization, workspace)}/{_seg(subscription_id)}",
            workspace=workspace,
            operation="update_subscription",
            deadline=deadline,
            json=body,
        )
        return dict(updated)

    async def _all_pages(
        self,
        path: str,
        workspace: str,
        operation: str,
        params: dict[str, str],
        deadline: float,
        trace: TraceContext | None = None,
    ) -> list[JSON]:
        results: list[JSON] = []
        token: str | None = None
        while True:
            query = dict(params)
            if token:
                query["pageToken"] = token
            _, page = await self.request(
                "GET",
                path,
                workspace=workspace,
                operation=operation,
                deadline=deadline,
                params=query,
                trace=trace,
            )
            page = page if isinstance(page, dict) else {}
            results.extend(item for item in page.get("results") or [] if isinstance(item, dict))
            token = page.get("nextPageToken") or None
            if not token:
                return results


def _seg(value: str) -> str:
    """One path segment, escaped: ids come from commands and must not change the path."""
    return quote(value, safe="")
