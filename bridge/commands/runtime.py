"""Wires the command side into the app: Bird client, ledger, results topic, executor and
worker (I/O). ``KafkaResultSink`` is the results topic behind the ``ResultSink`` port.

The app (bridge/app.py) hands over what it shares (``CommandHost``); this module does
not import the app, so the two do not import each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from bridge.bird.client import BirdClient
from bridge.commands.executor import Executor
from bridge.commands.ledger import Ledger
from bridge.commands.ports import DurablePublisher
from bridge.commands.results import stored_result_record
from bridge.commands.worker import CommandWorker
from bridge.config import Config
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from bridge.recovery_runtime import Recovery
from bridge.tracecontext import TraceContext
from bridge.tracing import Tracing


@dataclass(frozen=True)
class KafkaResultSink:
    """Results go to ``topic``, each acknowledged before the caller goes on."""

    publisher: DurablePublisher
    topic: str

    @property
    def max_record_size(self) -> int:
        return self.publisher.max_record_size

    async def publish(
        self, command_id: str, value: bytes, *, trace: TraceContext | None = None
    ) -> None:
        record = stored_result_record(command_id, value, trace)
        await self.publisher.publish_durably(self.topic, record)


class CommandHost(Protocol):
    """What the command side needs of the process it runs in."""

    config: Config
    metrics: Metrics
    publisher: Publisher
    readiness_checks: list[Callable[[], bool]]
    liveness_checks: list[Callable[[], str | None]]
    draining: bool
    recovery: Recovery | None
    tracing: Tracing


def commands_context(
    host: CommandHost,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's cleanup context that runs the command worker for ``host``."""

    async def commands_ctx(_app: web.Application) -> AsyncIterator[None]:
        config = host.config
        bird = BirdClient(config.bird, host.metrics, tracing=host.tracing)
        await bird.start()
        ledger = Ledger(config, host.publisher)
        host.metrics.ledger_entries.set_function(ledger.size)
        host.metrics.ledger_records_after_snapshot.set_function(ledger.records_after_snapshot)
        results = KafkaResultSink(host.publisher, config.topics.results)
        executor = Executor(config, bird, ledger, results, host.metrics, tracing=host.tracing)
        worker = CommandWorker(
            config, host.publisher, ledger, executor, host.metrics, tracing=host.tracing
        )
        host.readiness_checks.append(worker.connected)
        host.readiness_checks.append(lambda: ledger.broken() is None)
        host.liveness_checks.append(ledger.broken)
        await worker.start()
        # The channel-state fold and periodic reconciliation (contract section 10).
        recovery = host.recovery = Recovery(config, bird, host.publisher, host.metrics)
        await recovery.start()
        yield
        host.draining = True
        await recovery.stop()
        await worker.stop(drain_s=config.shutdown_timeout_s * 0.4)
        await bird.close()

    return commands_ctx
