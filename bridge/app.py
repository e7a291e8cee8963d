"""Composition root: builds the aiohttp app for the chosen roles and runs it until SIGTERM.

Resources are owned by ``cleanup_ctx`` (started in order, stopped in reverse, only if
started). Shutdown: readiness off, stop accepting, finish in-flight requests, drain the
command worker, flush the producer; all within ``BRIDGE_SHUTDOWN_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from bridge.collector import freeze_startup_objects, unfreeze
from bridge.commands.ledger_snapshots import PARTITIONS as SNAPSHOTS_PARTITIONS
from bridge.commands.ledger_snapshots import SNAPSHOTS_TOPIC_CONFIG
from bridge.commands.runtime import commands_context
from bridge.config import ROLES, Config, Role
from bridge.errors import BridgeError, PublishUnavailable, StartupError
from bridge.http_server import HttpRunner
from bridge.ingest.http import OUTCOME, REQUEST_ID, WebhookIngest
from bridge.kafka.clients import CHANNEL_STATE_TOPIC_CONFIG, all_topics, ensure_topics
from bridge.kafka.publisher import Publisher
from bridge.metrics import CONTENT_TYPE_LATEST, Counter, Metrics
from bridge.ports import port_problem
from bridge.recovery_runtime import Recovery
from bridge.retry import SUBSCRIPTIONS_BACKOFF, Retry
from bridge.tasks import stop_task
from bridge.tracing import Tracing

log = structlog.get_logger("bridge")

WEBHOOK_PATH = "/webhooks/bird"
WEBHOOK_PREFIX = WEBHOOK_PATH + "/"  # + workspace id, with several workspaces


@dataclass
class Bridge:
    """What one process runs: its config, roles and shared parts."""

    config: Config
    roles: Sequence[Role]
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    publisher: Publisher = field(init=False)
    readiness_checks: list[Callable[[], bool]] = field(default_factory=list)
    # Each says why a part stopped in a state only a restart repairs (/healthz answers
    # 503), or None.
    liveness_checks: list[Callable[[], str | None]] = field(default_factory=list)
    _outcomes: dict[str, Counter] = field(default_factory=dict)
    _codes: dict[int, Counter] = field(default_factory=dict)
    recovery: Recovery | None = None  # the commands role's state fold and reconciliation
    tracing: Tracing = field(default_factory=Tracing)  # propagation only, unless configured

    def __post_init__(self) -> None:
        self.publisher = Publisher(self.config.kafka, self.metrics, on_connect=self._create_topics)
        self.readiness_checks.append(lambda: self.publisher.connected)
        role = "all" if set(self.roles) == set(ROLES) else self.roles[0]
        self.metrics.ready.labels(role).set_function(lambda: 1.0 if self.ready() else 0.0)

    async def _create_topics(self) -> None:
        if self.config.kafka.create_topics:
            await ensure_topics(
                self.config.kafka,
                all_topics(self.config.topics),
                compacted=[self.config.topics.ledger],
                configs={
                    self.config.topics.channel_state: CHANNEL_STATE_TOPIC_CONFIG,
                    self.config.topics.ledger_snapshots: SNAPSHOTS_TOPIC_CONFIG,
                },
                partitions={self.config.topics.ledger_snapshots: SNAPSHOTS_PARTITIONS},
            )

    def count_webhook(self, outcome: str) -> None:
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = self._outcomes[outcome] = self.metrics.webhook_requests.labels(outcome)
        counter.inc()

    def count_webhook_response(self, status: int) -> None:
        counter = self._codes.get(status)
        if counter is None:
            counter = self._codes[status] = self.metrics.webhook_responses.labels(str(status))
        counter.inc()

    def ready(self) -> bool:
        return not self.draining and all(check() for check in self.readiness_checks)


BRIDGE = web.AppKey("bridge", Bridge)
CAUSE = web.RequestKey("cause", str)


@web.middleware
async def request_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Map ``BridgeError``s to answers and write one log line per request."""
    started = time.perf_counter()
    bridge = request.app[BRIDGE]
    outcome: str
    try:
        response = await handler(request)
        outcome = request.get(OUTCOME, "ok")
    except PublishUnavailable as exc:
        outcome = exc.outcome
        request[CAUSE] = repr(exc.__cause__ or exc)
        response = web.json_response(
            {"error": exc.reason},
            status=503,
            headers={"Retry-After": str(bridge.config.webhook.retry_after_s)},
        )
    except BridgeError as exc:
        outcome = exc.outcome
        response = web.json_response(
            {"error": exc.reason}, status=exc.http_status, headers=exc.headers()
        )
    except web.HTTPException as exc:
        if _is_webhook(request.path):  # an answer all the same (405 for a GET, ...)
            bridge.count_webhook_response(exc.status)
        raise  # aiohttp's own answers (404, 405, ...)
    except Exception:
        log.exception("unexpected error", path=request.path, request_id=request.get(REQUEST_ID))
        outcome = "error"
        response = web.json_response({"error": "internal error"}, status=500)
    if _is_webhook(request.path):
        bridge.count_webhook(outcome)
        bridge.count_webhook_response(response.status)
        if not log.is_enabled_for(logging.INFO):
            return response  # below the log level: skip building the line
        fields: dict[str, Any] = {}
        if "workspace" in request.match_info:
            fields["workspace_id"] = request.match_info["workspace"]
        if CAUSE in request:
            fields["cause"] = request[CAUSE]
        log.info(
            "webhook",
            request_id=request.get(REQUEST_ID),
            status=response.status,
            outcome=outcome,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            **fields,
        )
    return response


def _is_webhook(path: str) -> bool:
    return path == WEBHOOK_PATH or path.startswith(WEBHOOK_PREFIX)


async def healthz(request: web.Request) -> web.Response:
    reasons = [r for check in request.app[BRIDGE].liveness_checks if (r := check()) is not None]
    if not reasons:
        return web.json_response({"status": "alive"})
    return web.json_response({"status": "not alive", "reason": "; ".join(reasons)}, status=503)


async def readyz(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    if bridge.ready():
        return web.json_response({"status": "ready"})
    reason = "shutting down" if bridge.draining else "not connected to Kafka"
    return web.json_response({"status": "not ready", "reason": reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[BRIDGE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(bridge: Bridge) -> web.Application:
    handler_args = {
        "max_field_size": 8190,
        "keepalive_timeout": bridge.config.http_keepalive_timeout_s,
    }
    app = web.Application(middlewares=[request_log], handler_args=handler_args)
    app[BRIDGE] = bridge
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(_tracing_ctx)
    app.cleanup_ctx.append(_publisher_ctx)
    if "ingest" in bridge.roles:
        ingest = WebhookIngest(
            bridge.config, bridge.publisher, bridge.metrics, tracing=bridge.tracing
        )
        app.router.add_post(WEBHOOK_PATH, ingest.handle)
        if ingest.several:
            app.router.add_post(WEBHOOK_PREFIX + "{workspace}", ingest.handle_workspace)
        if bridge.config.webhook.ensure_subscriptions:
            app.cleanup_ctx.append(_subscriptions_ctx)
    if "commands" in bridge.roles:
        app.cleanup_ctx.append(commands_context(bridge))
    return app


def make_runner(bridge: Bridge, *, shutdown_timeout: float) -> web.AppRunner:
    """The bridge app's runner, with the request-head deadline (``bridge.http_server``)."""
    timed_out = bridge.metrics.http_connections_timed_out
    return HttpRunner(
        build_app(bridge),
        header_timeout_s=bridge.config.http_header_timeout_s,
        on_timeout=lambda phase: timed_out.labels(phase).inc(),
        access_log=None,
        shutdown_timeout=shutdown_timeout,
    )


async def _tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    """Stopped last: the spans of the shutdown itself are exported too."""
    yield
    tracing = app[BRIDGE].tracing
    if tracing.enabled:
        timeout = min(5.0, app[BRIDGE].config.shutdown_timeout_s / 4)
        if not await asyncio.to_thread(tracing.shutdown, timeout):
            log.warning("spans not all exported at shutdown", waited_s=timeout)


async def _publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    bridge = app[BRIDGE]
    await bridge.publisher.start()
    yield
    bridge.draining = True
    await bridge.publisher.stop(timeout=min(5.0, bridge.config.shutdown_timeout_s / 2))


async def _subscriptions_ctx(app: web.Application) -> AsyncIterator[None]:
    """``BRIDGE_ENSURE_SUBSCRIPTIONS``: register at Bird in the background, retrying."""
    from bridge.bird.client import BirdClient
    from bridge.errors import BirdError
    from bridge.subscriptions import ensure_subscriptions

    bridge = app[BRIDGE]

    async def ensure() -> None:
        retry = Retry(SUBSCRIPTIONS_BACKOFF)
        async with BirdClient(bridge.config.bird, bridge.metrics) as bird:
            while True:
                try:
                    for line in await ensure_subscriptions(
                        bridge.config, bird, webhook_path=WEBHOOK_PATH
                    ):
                        log.info("subscriptions: " + line)
                    return
                except BirdError as exc:
                    log.warning("cannot ensure subscriptions, retrying", error=exc.message)
                    await retry.wait()

    task = asyncio.create_task(ensure())
    yield
    await stop_task(task)


async def serve(
    bridge: Bridge, *, stop: asyncio.Event | None = None, reuse_port: bool = False
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then shut down within the configured deadline.

    ``reuse_port``: one of several workers sharing the port (``bridge.workers``), which
    checked the port before starting them."""
    config = bridge.config
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    where = f"{config.http_host}:{config.http_port} (BRIDGE_HTTP_PORT)"
    # A busy port is found before anything connects to Kafka.
    problem = None if reuse_port else port_problem(config.http_host, config.http_port)
    if problem:
        raise StartupError(f"cannot listen on {where}: {problem}")
    runner = make_runner(bridge, shutdown_timeout=config.shutdown_timeout_s * 0.5)
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:  # taken between the check and now
        await runner.cleanup()
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    # Start-up is over: what it made stays, out of the collector's full passes (p99).
    frozen = freeze_startup_objects()
    log.info(
        "bridge started",
        roles=list(bridge.roles),
        listen=f"http://{config.http_host}:{config.http_port}",
        kafka=config.kafka.bootstrap_servers,
        frozen_objects=frozen,
    )
    try:
        await stop.wait()
        log.info("shutting down", deadline_s=config.shutdown_timeout_s)
        bridge.draining = True
        started = time.monotonic()
        try:
            async with asyncio.timeout(config.shutdown_timeout_s):
                await runner.cleanup()
        except TimeoutError:
            log.error("shutdown deadline passed; exiting anyway")
        log.info("stopped", took_s=round(time.monotonic() - started, 2))
    finally:
        unfreeze()  # a process that serves again (the tests) keeps no garbage for ever


def bound_port(runner: web.AppRunner) -> int:
    """The port a site listens on (useful with port 0)."""
    for address in runner.addresses:  # socket names; a str for a unix socket
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("no site is listening")
