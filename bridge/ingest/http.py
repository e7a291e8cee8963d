"""``POST /webhooks/bird[/{workspaceId}]``: read (bounded) -> verify -> normalize -> publish
-> 204. Thin I/O. With several workspaces (contract 12) the path names the workspace, whose
keys alone verify the request: one dict lookup, whatever the number of workspaces.

With spans exported (``bridge.tracing``) each delivery is a server span, parented on the
request's ``traceparent``, with ``verified`` and ``published`` events; the event record then
carries that span's context. Without, the request's headers are carried unchanged."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiohttp import web

from bridge.config import Config
from bridge.errors import (
    BadPayload,
    BridgeError,
    PayloadTooLarge,
    RequestTimeout,
    SignatureMismatch,
    TooManyRequests,
    UnknownWorkspace,
    WorkspaceMismatch,
)
from bridge.events import Record
from bridge.ingest.age import age_s
from bridge.ingest.dedupe import DedupeWindow
from bridge.ingest.deliveries import Deliveries, OnTimeout
from bridge.ingest.normalize import bird_time, event_id, normalize_event, parse_body
from bridge.ingest.trace import TRACEPARENT, TRACESTATE, trace_headers
from bridge.ingest.verify import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from bridge.ratelimit import KeyedLimiter
from bridge.tracecontext import from_http
from bridge.tracing import SpanScope, Tracing
from bridge.workspaces import webhook_url

log = structlog.get_logger("bridge.ingest")

_JSON_TYPES = ("application/json",)

WEBHOOK_ROUTE = "/webhooks/bird"
WORKSPACE_ROUTE = "/webhooks/bird/{workspaceId}"

REQUEST_ID = web.RequestKey("request_id", str)
OUTCOME = web.RequestKey("outcome", str)


def buffered_body(request: web.Request, limit: int) -> bytes | None:
    """The body when its Content-Length is known, within ``limit``, and all of it has
    arrived with the head (a small webhook's usual case): taken without waiting, so
    without a read deadline. None otherwise: then ``read_body`` waits for it."""
    length = request.content_length
    if length is None or length > limit or length == 0:
        return None
    content = request.content
    if content.total_bytes < length:
        return None
    return content.read_nowait(length)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it would exceed ``limit``: never reads past it."""
    length = request.content_length
    if length is not None:
        if length > limit:
            raise PayloadTooLarge(f"body of {length} bytes exceeds {limit} bytes")
        if length == 0:  # aiohttp's empty stream refuses even readexactly(0)
            return b""
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise BadPayload("body shorter than its Content-Length") from None
    body = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")


@dataclass(frozen=True, slots=True)
class WorkspaceTarget:
    """What verifies one workspace's webhooks: its keys and the URL Bird signs (None: the
    request's own URL, for an insecure bridge without a public URL)."""

    keys: tuple[str, ...]
    url: str | None


def claimed_workspace(body: dict[str, object]) -> object:
    """The workspace a webhook body names (``payload.workspaceId``), if any."""
    payload = body.get("payload")
    return payload.get("workspaceId") if isinstance(payload, dict) else None


def _is_json(content_type: str) -> bool:
    return content_type in _JSON_TYPES or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


class WebhookIngest:
    """The webhook handler. Duplicate deliveries (same event id) are answered, not republished
    (the bookkeeping is ``bridge.ingest.deliveries``)."""

    def __init__(
        self,
        config: Config,
        publisher: Publisher,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.tracing = tracing or Tracing()
        self.webhook = config.webhook
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.keys = [
            key.reveal()
            for key in (self.webhook.signing_key, self.webhook.signing_key_previous)
            if key is not None
        ]
        self.deliveries = Deliveries(
            self._publish,
            DedupeWindow(
                max_entries=self.webhook.dedupe_max_entries, ttl_s=self.webhook.dedupe_ttl_s
            ),
            wait_timeout_s=self.webhook.publish_timeout_s,
            # The producer's own retries end within a few request timeouts.
            settle_timeout_s=3 * config.kafka.request_timeout_ms / 1000,
            on_duplicate=metrics.webhook_duplicates.inc,
            clock=clock,
        )
        # Several workspaces: each path /webhooks/bird/{id} is verified with its keys only.
        self.several = config.bird.workspaces_from_file
        public_url = self.webhook.public_url
        self.workspaces = (
            {
                w.id: WorkspaceTarget(
                    w.signing_keys, webhook_url(public_url, w.id) if public_url else None
                )
                for w in config.bird.workspaces
            }
            if self.several
            else {}
        )
        metrics.webhook_deliveries_in_flight.set_function(lambda: len(self.deliveries))
        rate = self.webhook.rate_limit_per_s
        self.limiter = KeyedLimiter(rate) if rate > 0 else None

    def client_address(self, request: web.Request) -> str:
        """The caller, for the inbound rate limit: with a trusted proxy in front, the last
        X-Forwarded-For hop (the one that proxy appended; earlier hops are the client's
        own words), else the peer address."""
        if self.webhook.trust_forwarded_for:
            forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        return request.remote or "unknown"

    async def handle(self, request: web.Request) -> web.Response:
        """``/webhooks/bird``: the one signing key decides, whatever workspace the body
        names (v1, contract 12)."""
        self._admit(request)
        if self.several:
            raise UnknownWorkspace(
                "this bridge serves several workspaces: Bird posts to /webhooks/bird/<workspaceId>"
            )
        return await self._receive(request, self.keys, self.webhook.public_url, None)

    async def handle_workspace(self, request: web.Request) -> web.Response:
        """``/webhooks/bird/{workspace}``: that workspace's keys alone decide."""
        self._admit(request)
        workspace_id = request.match_info["workspace"]
        target = self.workspaces.get(workspace_id)
        if target is None:
            raise UnknownWorkspace
        return await self._receive(request, target.keys, target.url, workspace_id)

    def _admit(self, request: web.Request) -> None:
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id is not None:
            request[REQUEST_ID] = request_id
        if self.limiter is not None:
            wait = self.limiter.try_acquire(self.client_address(request), self.clock())
            if wait > 0:
                raise TooManyRequests(math.ceil(wait))

    def _receive(
        self,
        request: web.Request,
        keys: Sequence[str],
        signed_url: str | None,
        workspace_id: str | None,
    ) -> Awaitable[web.Response]:
        # Not a coroutine itself: without tracing, one coroutine frame fewer on the path
        # every resumption of the request's task goes through.
        if not self.tracing.enabled:
            return self._deliver(request, keys, signed_url, workspace_id, None)
        return self._traced(request, keys, signed_url, workspace_id)

    async def _traced(
        self,
        request: web.Request,
        keys: Sequence[str],
        signed_url: str | None,
        workspace_id: str | None,
    ) -> web.Response:
        headers = request.headers
        route = WEBHOOK_ROUTE if workspace_id is None else WORKSPACE_ROUTE
        span = self.tracing.span(
            f"POST {route}",
            from_http(headers.getall(TRACEPARENT, []), headers.getall(TRACESTATE, [])),
            kind="server",
            attributes={
                "http.request.method": "POST",
                "http.route": route,
                "url.path": request.path,
                "bridge.request_id": request.get(REQUEST_ID, ""),
                "bridge.workspace_id": workspace_id or "",
            },
        )
        try:
            response = await self._deliver(request, keys, signed_url, workspace_id, span)
        except BridgeError as exc:
            span.set("http.response.status_code", exc.http_status)
            span.end(exc.outcome)
            raise
        except BaseException as exc:
            span.end(type(exc).__name__)
            raise
        span.set("http.response.status_code", response.status)
        span.end()
        return response

    async def _deliver(
        self,
        request: web.Request,
        keys: Sequence[str],
        signed_url: str | None,
        workspace_id: str | None,
        span: SpanScope | None,
    ) -> web.Response:
        request_id = request.get(REQUEST_ID)
        body = buffered_body(request, self.webhook.max_body_bytes)
        if body is None:
            try:
                async with self.publisher.deadlines.after(self.webhook.read_timeout_s):
                    body = await read_body(request, self.webhook.max_body_bytes)
            except TimeoutError:
                raise RequestTimeout(
                    f"body not received within {self.webhook.read_timeout_s:g}s"
                ) from None
        self.metrics.webhook_body_bytes.observe(len(body))
        if not self.webhook.insecure or keys:
            url = signed_url or str(request.url)
            try:
                verify_signature(
                    signatures=request.headers.getall(SIGNATURE_HEADER, []),
                    timestamps=request.headers.getall(TIMESTAMP_HEADER, []),
                    url=url,
                    body=body,
                    keys=keys,
                )
            except SignatureMismatch:
                # Bird signs the subscription URL exactly as registered: a trailing slash,
                # another host or scheme shows up here at once (docs/deployment.md).
                log.warning(
                    "webhook signature does not match",
                    request_id=request_id,
                    checked_url=url,
                    request_url=str(request.url),
                    host=request.headers.get("Host"),
                )
                raise
        # The signature decides, not the Content-Type (contract 9): Bird's docs promise none.
        if not _is_json(request.content_type):
            self.metrics.webhook_content_type_mismatches.inc()
        if span is None:
            traceparent = request.headers.getall(TRACEPARENT, [])
            trace = (
                trace_headers(traceparent, request.headers.getall(TRACESTATE, []))
                if traceparent
                else ()
            )
        else:  # the record names the delivery's span (same trace id)
            span.event("verified")
            trace = span.context.kafka_headers() if span.context is not None else ()
        parsed = parse_body(body)
        if workspace_id is not None:
            claimed = claimed_workspace(parsed)
            if claimed is not None and claimed != workspace_id:
                raise WorkspaceMismatch
        received_at = datetime.now(UTC)
        payload = parsed.get("payload")
        # Bird's time of the event, parsed once: the event's time and its age below.
        stamp = bird_time(payload) if isinstance(payload, dict) else None
        record = normalize_event(
            parsed,
            raw_body=body,
            request_id=request_id,
            default_workspace_id=workspace_id or self.config.bird.workspace_id,
            received_at=received_at,
            origin="webhook",
            trace=trace,
            stamp=stamp,
        )
        outcome = await self.deliveries.publish_once(event_id(request_id, body), record)
        request[OUTCOME] = outcome
        if span is not None:
            span.event("published", {"bridge.outcome": outcome})
        if outcome == "published":  # once per event on the topic, not per delivery
            age = age_s(stamp[1] if stamp is not None else None, received_at)
            if age is not None:
                self.metrics.webhook_event_age.observe(age)
        return web.Response(status=204)

    def _publish(self, record: Record, on_timeout: OnTimeout) -> Awaitable[object]:
        # The publisher's coroutine itself, not one wrapping it: a frame fewer per resumption.
        return self.publisher.publish(
            self.config.topics.events,
            record,
            timeout=self.webhook.publish_timeout_s,
            on_timeout=on_timeout,
        )
