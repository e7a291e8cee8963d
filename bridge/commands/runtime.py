"""Wires the command side into the app: Bird client, ledger, executor and worker (I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.app import BRIDGE
from bridge.bird.client import BirdClient
from bridge.commands.executor import Executor
from bridge.commands.ledger import Ledger
from bridge.commands.worker import CommandWorker
from bridge.recovery_runtime import Recovery

WORKER = web.AppKey("command_worker", CommandWorker)


async def commands_ctx(app: web.Application) -> AsyncIterator[None]:
    bridge = app[BRIDGE]
    config = bridge.config
    bird = BirdClient(config.bird, bridge.metrics)
    await bird.start()
    ledger = Ledger(config, bridge.publisher)
    executor = Executor(config, bird, ledger, bridge.publisher, bridge.metrics)
    worker = CommandWorker(config, bridge.publisher, ledger, executor, bridge.metrics)
    app[WORKER] = worker
    bridge.readiness_checks.append(worker.connected)
    await worker.start()
    recovery = bridge.recovery = Recovery(config, bird, bridge.publisher, bridge.metrics)
    await recovery.start()
    yield
    bridge.draining = True
    await recovery.stop()
    await worker.stop(drain_s=config.shutdown_timeout_s * 0.4)
    await bird.close()
