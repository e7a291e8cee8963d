"""The running simulator (async): state, faults, request journal, installs and deliveries.

Owns every background task; ``close()`` cancels them. Handlers call it; it calls the pure state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

from birdsim.delivery import Deliverer
from birdsim.faults import FaultPlan
from birdsim.journal import RequestJournal
from birdsim.loss import WebhookLoss
from birdsim.model import ChannelEvent, Connector
from birdsim.settings import SimulatorSettings
from birdsim.state import SimulatorState, install_outcome
from birdsim.validation import parse_connector

log = structlog.get_logger("birdsim")


class Simulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.state = self._new_state()
        self.faults = FaultPlan(settings.faults)
        self.journal = RequestJournal(settings.request_log_size)
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._installs: dict[str, asyncio.Task[None]] = {}
        self.deliverer = Deliverer(lambda: self.state, settings, self.spawn)
        self.loss = WebhookLoss()

    def _new_state(self) -> SimulatorState:
        s = self.settings
        return SimulatorState(
            organization_id=s.organization_id,
            workspace_ids=s.workspace_ids,
            other_organizations=[(o.id, o.workspace_ids) for o in s.organizations],
            region=s.region,
            reject_duplicates=s.reject_duplicates,
        )

    async def start(self) -> None:
        self.stopping.clear()
        await self.deliverer.start()

    async def close(self) -> None:
        """Release hanging requests, cancel installs and deliveries, close the HTTP session."""
        self.stopping.set()
        await self._cancel_tasks()
        await self.deliverer.close()

    async def reset(self) -> None:
        """Back to the start-up settings: no connectors, subscriptions, deliveries or log."""
        await self._cancel_tasks()
        self.state = self._new_state()
        self.faults = FaultPlan(self.settings.faults)
        self.journal.clear()
        self.loss = WebhookLoss()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._installs.clear()

    async def hang(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the simulator is shutting down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # -- connectors --------------------------------------------------------------------------

    def create_connector(self, workspace_id: str, body: object) -> Connector:
        """Validate, store, and start the asynchronous install (bird-api.md 2, Notes)."""
        request = parse_connector(body)
        self.state.require_workspace(workspace_id)
        faults = self.faults.settings
        outcome = install_outcome(
            request.name, fail_all=faults.fail_installs, stuck_all=faults.stuck_installs
        )
        connector = self.state.create_connector(workspace_id, request, outcome)
        self._installs[connector.id] = self.spawn(self._install(connector.id))
        return connector

    async def _install(self, connector_id: str) -> None:
        try:
            await asyncio.sleep(self.settings.install_delay_s)
            self.emit(self.state.install_channel(connector_id))
            await asyncio.sleep(self.settings.activate_delay_s)
            self.emit(self.state.finish_install(connector_id))
        finally:
            self._installs.pop(connector_id, None)

    def delete_connector(self, workspace_id: str, connector_id: str) -> None:
        self.state.delete_connector(workspace_id, connector_id)
        install = self._installs.pop(connector_id, None)
        if install is not None:
            install.cancel()

    def set_channel_status(self, channel_id: str, status: str, reason: str | None) -> ChannelEvent:
        """Control API: force a status (stops a pending install) and emit ``channel.updated``."""
        channel = self.state.find_channel(channel_id)
        install = self._installs.pop(channel.connector_id, None)
        if install is not None:
            install.cancel()
        event = self.state.set_channel_status(channel_id, status, reason)
        self.emit(event)
        return event

    def emit(self, event: ChannelEvent | None) -> None:
        if event is None:
            return
        if self.loss.take():
            log.info("channel event lost (control API)", channel_id=event.payload["id"])
            return
        deliveries = self.deliverer.dispatch(event)
        log.info(
            "channel event",
            webhook_event=event.event,
            channel_id=event.payload["id"],
            channel_status=event.payload["status"],
            deliveries=len(deliveries),
        )
