"""Reconciliation runs (I/O around ``plan.py``): one shot (``bridge reconcile``) or
periodic in the commands role.

A run reads the whole channel state to its end, then per workspace lists every channel
at Bird (all pages, through the Bird client's retries and its per-workspace GET limiter,
the commands role's own client when in-process), and publishes the planned events. A
workspace whose listing fails publishes nothing: a partial list would look like drift.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog

from bridge.bird.client import BirdClient
from bridge.config import Config
from bridge.errors import BirdError, BirdUnavailable, PublishUnavailable
from bridge.kafka.publisher import Publisher
from bridge.kafka.scan import scan_topic
from bridge.metrics import Metrics
from bridge.reconcile.plan import Plan, plan
from bridge.state.fold import Known, read_state
from bridge.tasks import stop_task

log = structlog.get_logger("bridge.reconcile")

PAGE_LIMIT = 1000  # the channels list allows 1..1000 (bird-api.md 3)


@dataclass
class Summary:
    workspaces: int = 0
    channels: int = 0
    published: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        text = (
            f"reconciled workspaces={self.workspaces} channels={self.channels} "
            f"published={self.published}"
        )
        if self.failed:
            text += f" failed={len(self.failed)} " + " ".join(
                f"[{ws}: {why}]" for ws, why in self.failed.items()
            )
        return text


async def read_known(config: Config) -> dict[str, Known]:
    """Every channel's known state, read from the state topic to its end."""
    known: dict[str, Known] = {}
    async for records in scan_topic(config.kafka, config.topics.channel_state, batch=2000):
        for record in records:
            if record.value is None and record.key is not None:
                known.pop(record.key.decode(errors="replace"), None)
                continue
            found = read_state(record.value)
            if found is not None:
                known[found[0]] = found[1]
    return known


class Reconciler:
    def __init__(
        self, config: Config, bird: BirdClient, publisher: Publisher, metrics: Metrics
    ) -> None:
        self.config = config
        self.bird = bird
        self.publisher = publisher
        self.metrics = metrics
        self.page_limit = PAGE_LIMIT

    async def list_channels(self, workspace: str) -> list[dict[str, Any]]:
        """Every channel of ``workspace`` at Bird, following ``nextPageToken``."""
        channels: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"limit": str(self.page_limit)}
            if token:
                params["pageToken"] = token
            _, page = await self.bird.request(
                "GET",
                f"/workspaces/{quote(workspace, safe='')}/channels",
                workspace=workspace,
                operation="list_channels",
                deadline=time.monotonic() + self.config.commands.command_deadline_s,
                params=params,
            )
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise BirdUnavailable("list_channels: Bird's answer has no results list")
            channels.extend(item for item in page["results"] if isinstance(item, dict))
            token = page.get("nextPageToken") or None
            if not token:
                return channels

    async def run(self, workspaces: Sequence[str]) -> Summary:
        summary = Summary()
        known = await read_known(self.config)
        for workspace in dict.fromkeys(workspaces):
            try:
                channels = await self.list_channels(workspace)
            except BirdError as exc:
                summary.failed[workspace] = exc.message
                self.metrics.reconcile_failures.labels(workspace).inc()
                log.warning("reconciliation failed", workspace=workspace, error=exc.message)
                continue
            result = plan(workspace, channels, known, now=datetime.now(UTC))
            try:
                await self._publish(result)
            except PublishUnavailable as exc:
                summary.failed[workspace] = f"Kafka: {exc.reason}"
                self.metrics.reconcile_failures.labels(workspace).inc()
                continue
            summary.workspaces += 1
            summary.channels += result.seen
            summary.published += len(result.records)
            self.metrics.reconcile_channels_seen.labels(workspace).inc(result.seen)
            self.metrics.reconcile_drift.labels(workspace, "created").inc(result.created)
            self.metrics.reconcile_drift.labels(workspace, "updated").inc(result.updated)
            self.metrics.reconcile_last_success.labels(workspace).set(time.time())
            log.info(
                "reconciled",
                workspace=workspace,
                channels=result.seen,
                created=result.created,
                updated=result.updated,
                unreadable=result.unreadable,
            )
        return summary

    async def _publish(self, result: Plan, *, chunk: int = 500) -> None:
        timeout = self.config.kafka.request_timeout_ms / 1000
        topic = self.config.topics.events
        for start in range(0, len(result.records), chunk):
            await asyncio.gather(
                *(
                    self.publisher.publish(topic, record, timeout=timeout)
                    for record in result.records[start : start + chunk]
                )
            )


class ReconcileLoop:
    """``BRIDGE_RECONCILE_INTERVAL_S`` in the commands role: runs while this replica owns
    partition 0 of the channel-state fold (``StateFolder.on_leader``), so one replica at a
    time; a revocation cancels the run in hand before the partition moves."""

    def __init__(self, reconciler: Reconciler, interval_s: float, workspaces: Sequence[str]):
        self.reconciler = reconciler
        self.interval_s = interval_s
        self.workspaces = list(workspaces)
        self._task: asyncio.Task[None] | None = None
        self._next = 0.0  # monotonic time of the next run: a rebalance does not hurry it

    async def leadership(self, leader: bool) -> None:
        if leader and self._task is None:
            log.info("this replica reconciles", interval_s=self.interval_s)
            self._task = asyncio.create_task(self._loop(), name="reconcile")
        elif not leader:
            await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _loop(self) -> None:
        while True:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = time.monotonic() + self.interval_s
            try:
                summary = await self.reconciler.run(self.workspaces)
                log.info(summary.line())
            except asyncio.CancelledError:
                raise
            except Exception:  # a Kafka hiccup reading the state: try again next time
                log.exception("reconciliation run failed")
