"""Carries out the plan of one command (plan.py) against the ports (ports.py).

    Create:  ledger started -> POST -> ledger accepted -> result accepted
             -> follow connector + channel -> ledger final -> result succeeded / failed
    LookUp:  look for the connector at Bird; adopt it, or POST; then as Create
    Resume:  result accepted again -> follow -> ledger final -> result
    Execute: delete / get / list -> ledger final -> result
    Replay:  the stored final result again, byte for byte
    Refuse:  ``InvalidCommand`` (the worker dead-letters the record)

The ledger is written before each result, so a command seen again (redelivery, crash,
rebalance) resumes from what was done. Every decision is in plan.py (pure); this module
is the I/O around it, through ``BirdConnectors``, ``LedgerStore`` and ``ResultSink``.

``command.trace`` (contract 13) goes with every Bird call and result; each ledger write
and result publish is a span of it (``bridge.tracing``: nothing when not exporting).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from bridge.bird.policy import Backoff
from bridge.commands import plan as core
from bridge.commands.ledger_state import Entry, ledger_record
from bridge.commands.parse import Command
from bridge.commands.ports import BirdConnectors, LedgerStore, ResultSink
from bridge.commands.results import (
    MAX_REASON,
    Status,
    error_body,
    result_value,
    shorten,
    stored_result_record,
)
from bridge.config import Config
from bridge.errors import (
    BirdError,
    BirdOutcomeUnknown,
    InvalidCommand,
    LedgerRecordMissing,
    RecordTooLarge,
)
from bridge.events import rfc3339
from bridge.kafka.size import size_of
from bridge.metrics import Metrics
from bridge.retry import Retry
from bridge.tracecontext import TraceContext
from bridge.tracing import Tracing

log = structlog.get_logger("bridge.commands")


def _now() -> datetime:
    return datetime.now(UTC)


class Executor:
    def __init__(
        self,
        config: Config,
        bird: BirdConnectors,
        ledger: LedgerStore,
        results: ResultSink,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = _now,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.commands = config.commands
        self.bird = bird
        self.ledger = ledger
        self.results = results
        self.metrics = metrics
        self.clock = clock
        self.tracing = tracing or Tracing()
        self.backoff = Backoff(config.bird.retry_base_s, config.bird.retry_cap_s)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    # --- entry point ----------------------------------------------------------------

    async def run(self, command: Command) -> str:
        """Execute (or resume, or replay) ``command``; return the outcome label.

        Copies of one commandId (a producer that sent it twice under different keys) run
        one after the other, so the second sees what the first did."""
        key = command.command_id
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._run(command)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _run(self, command: Command) -> str:
        deadline = time.monotonic() + self.commands.command_deadline_s
        match core.plan(command, await self.ledger.get(command.command_id)):
            case core.Refuse(error):
                raise error
            case core.Replay(entry):
                final = await self.ledger.final_value(entry)
                assert final is not None
                await self._publish(command.trace, command.command_id, final)
                return "replayed"
            case core.Execute(entry):
                try:
                    status, fields = await self._read_or_delete(command, deadline)
                except BirdError as exc:
                    status, fields = "failed", {"error": exc.as_result_error()}
                return await self._finish(
                    command, entry or self._started(command), status, **fields
                )
            case core.Resume(entry):
                assert entry.connector is not None
                if entry.accepted_result is not None:  # it may never have reached Kafka
                    await self._publish(command.trace, command.command_id, entry.accepted_result)
                log.info("resuming create", connector_id=entry.connector_id)
                return await self._follow_and_finish(command, entry, entry.connector)
            case core.Create():
                entry = self._started(command)
                await self._write(command.trace, entry)
                return await self._create(command, entry, deadline, look_first=False)
            case core.LookUp(entry):
                return await self._create(command, entry, deadline, look_first=True)

    async def _read_or_delete(
        self, command: Command, deadline: float
    ) -> tuple[Status, dict[str, Any]]:
        ws = command.workspace_id
        if command.action == "list":
            connectors = await self.bird.list_connectors(
                ws, command.template_ref, deadline=deadline, trace=command.trace
            )
            return "succeeded", {"connectors": connectors}
        assert command.connector_id is not None
        if command.action == "delete":
            existed = await self.bird.delete_connector(
                ws, command.connector_id, deadline=deadline, trace=command.trace
            )
            return "succeeded", {
                "extra": {"connectorId": command.connector_id, "alreadyDeleted": not existed}
            }
        connector = await self.bird.get_connector(
            ws, command.connector_id, deadline=deadline, trace=command.trace
        )
        channel = None
        channel_id = core.channel_id_of(connector)
        if channel_id:
            channel = await self.bird.get_channel(
                ws, channel_id, deadline=deadline, trace=command.trace
            )
        return "succeeded", {"connector": connector, "channel": channel}

    # --- create -----------------------------------------------------------------------

    async def _create(
        self, command: Command, entry: Entry, deadline: float, *, look_first: bool
    ) -> str:
        """Post the create (``look_first``: started before, never answered, so Bird may
        have created it already), ledger ``accepted``, then follow."""
        try:
            found = await self._find_created(command, entry, deadline) if look_first else None
            connector = found or await self._post_create(command, entry, deadline)
        except BirdError as exc:
            return await self._finish(command, entry, "failed", error=exc.as_result_error())
        entry = await self._accept(command, entry, connector)
        return await self._follow_and_finish(command, entry, connector)

    async def _follow_and_finish(
        self, command: Command, entry: Entry, connector: dict[str, Any]
    ) -> str:
        status, fields = await self._follow(command, connector)
        return await self._finish(command, entry, status, **fields)

    async def _accept(self, command: Command, entry: Entry, connector: dict[str, Any]) -> Entry:
        """Ledger ``accepted``, then the ``accepted`` result. A connector too large for a Kafka
        record (with its result, in the ledger) publishes no ``accepted``: the ledger keeps
        what following needs (its id and channel), and the final result says what happened
        (``result_too_large``, naming the connector)."""
        accepted = self._result(command, "accepted", connector=connector)
        full = entry.accepted(connector, accepted)
        size = self._size(full, accepted, command.trace)
        if size <= self.results.max_record_size:
            await self._write(command.trace, full)
            await self._publish(command.trace, command.command_id, accepted)
            return full
        log.warning(
            "accepted result too large for Kafka; not published",
            connector_id=connector.get("id"),
            size=size,
        )
        kept = entry.accepted(core.slim(connector), None)
        await self._write(command.trace, kept)
        return kept

    async def _post_create(self, command: Command, entry: Entry, deadline: float) -> dict[str, Any]:
        """POST the connector. A failure that leaves it unknown whether Bird created it is
        answered by looking for the connector before posting again."""
        retry = Retry(self.backoff)
        while True:
            try:
                return await self.bird.create_connector(
                    command.workspace_id, command.connector, deadline=deadline, trace=command.trace
                )
            except BirdOutcomeUnknown as exc:
                log.warning("create outcome unknown; looking for the connector", error=exc.message)
                found = await self._find_created(command, entry, deadline)
                if found is not None:
                    return found
                if not await retry.wait(deadline=deadline):
                    raise

    async def _find_created(
        self, command: Command, entry: Entry, deadline: float
    ) -> dict[str, Any] | None:
        """The connector this command created, if Bird has one (``plan.find_started_create``)."""
        candidates = await self.bird.list_connectors(
            command.workspace_id,
            command.connector.get("connectorTemplateRef"),
            deadline=deadline,
            trace=command.trace,
        )
        found, count = core.find_started_create(
            command.connector, entry.started_at, candidates, self.ledger.claimed_connectors()
        )
        if found is not None:
            log.info(
                "found the connector of a started create",
                connector_id=found.get("id"),
                candidates=count,
            )
        return found

    async def _follow(
        self, command: Command, connector: dict[str, Any]
    ) -> tuple[Status, dict[str, Any]]:
        """Poll the connector until its channel exists and is active, failed, or time runs out."""
        ws = command.workspace_id
        connector_id = str(connector.get("id"))
        started = time.monotonic()
        deadline = started + self.commands.follow_timeout_s
        interval = self.commands.follow_interval_s
        channel: dict[str, Any] | None = None
        outcome = "timeout"
        try:
            while True:
                call_deadline = min(deadline, time.monotonic() + self.commands.command_deadline_s)
                try:
                    channel_id = core.channel_id_of(connector)
                    if channel_id is None:
                        connector = await self.bird.get_connector(
                            ws, connector_id, deadline=call_deadline, trace=command.trace
                        )
                        channel_id = core.channel_id_of(connector)
                    if channel_id is not None:
                        channel = await self.bird.get_channel(
                            ws, channel_id, deadline=call_deadline, trace=command.trace
                        )
                        settled = core.settle(connector, channel_id, channel)
                        if settled is not None:
                            outcome = settled.outcome
                            return settled.status, settled.fields
                except BirdError as exc:
                    if not exc.retryable:
                        outcome = exc.code
                        return "failed", {
                            "connector": connector,
                            "channel": channel,
                            "error": exc.as_result_error(),
                        }
                    log.info("following create: Bird unavailable, will retry", error=exc.message)
                if time.monotonic() + interval > deadline:
                    limit = self.commands.follow_timeout_s
                    return "failed", {
                        "connector": connector,
                        "channel": channel,
                        "error": core.timed_out(connector_id, channel, limit),
                    }
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, max(5.0, self.commands.follow_interval_s))
        finally:
            self.metrics.follow_seconds.labels(outcome).observe(time.monotonic() - started)

    # --- ledger and results, each a span of the command's trace ---------------------------

    async def _write(self, trace: TraceContext | None, entry: Entry) -> None:
        with self.tracing.span(
            "ledger write",
            trace,
            kind="producer",
            attributes={"bridge.ledger.state": entry.state, "messaging.system": "kafka"},
        ):
            await self.ledger.write(entry)

    async def _publish(self, trace: TraceContext | None, command_id: str, value: bytes) -> None:
        """A result, carrying the command's trace context (with spans exported: the
        publishing span's, a child of the command's)."""
        with self.tracing.span(
            f"publish {self.config.topics.results}",
            trace,
            kind="producer",
            attributes={"messaging.system": "kafka", "bridge.command_id": command_id},
        ) as span:
            await self.results.publish(command_id, value, trace=span.context)

    # --- results ------------------------------------------------------------------------

    def _started(self, command: Command) -> Entry:
        return Entry(
            command_id=command.command_id,
            fingerprint=command.fingerprint,
            action=command.action,
            state="started",
            started_at=rfc3339(self.clock()),
        )

    def _result(self, command: Command, status: Status, **fields: Any) -> bytes:
        return self._result_for(command.command_id, command.action, status, **fields)

    def _result_for(self, command_id: str, action: str, status: Status, **fields: Any) -> bytes:
        return result_value(
            command_id=command_id, action=action, status=status, now=self.clock(), **fields
        )

    async def reject(
        self,
        value: bytes | None,
        action: str,
        exc: InvalidCommand,
        *,
        trace: TraceContext | None = None,
    ) -> None:
        """The ``failed`` / ``invalid_command`` result of a record with a readable commandId,
        kept in the ledger like any final result: the same record seen again gets the same
        result again; a commandId that belongs to another command gets none. ``trace``:
        the record's trace context, carried by the result."""
        assert exc.command_id is not None
        fingerprint = "invalid:" + hashlib.sha256(value or b"").hexdigest()
        try:
            known = await self.ledger.get(exc.command_id)
        except LedgerRecordMissing as missing:  # the dead letter still says what was wrong
            log.warning("invalid command's earlier result is gone", error=str(missing))
            return
        match core.plan_invalid(fingerprint, known):
            case core.Ignore():
                return
            case core.RecordRefusal():
                error = error_body(
                    "invalid_command",
                    shorten(exc.reason, MAX_REASON),
                    details={"field": shorten(exc.field, MAX_REASON)},
                )
                result = self._result_for(exc.command_id, action, "failed", error=error)
                entry = Entry(
                    command_id=exc.command_id,
                    fingerprint=fingerprint,
                    action=action,
                    state="final",
                    started_at=rfc3339(self.clock()),
                    final_result=result,
                )
                await self._write(trace, entry)
                await self._publish(trace, exc.command_id, result)
            case core.Replay(entry):
                try:
                    final = await self.ledger.final_value(entry)
                except LedgerRecordMissing as missing:  # the dead letter still says what was wrong
                    log.warning("invalid command's earlier result is gone", error=str(missing))
                    return
                if final is not None:
                    await self._publish(trace, exc.command_id, final)

    async def _finish(
        self, command: Command, entry: Entry, status: Status, **fields: Any
    ) -> Status:
        """Ledger ``final``, then the final result; returns the status published. A result
        that would not fit in a Kafka record (checked before anything is sent, the way the
        producer counts) is replaced by a ``failed`` one with ``result_too_large``, naming
        the size and the limit."""
        result = self._result(command, status, **fields)
        size = self._size(entry.final(result), result, command.trace)
        if size > self.results.max_record_size:
            status, result = "failed", self._too_large(command, status, size, fields)
        try:
            await self._write(command.trace, entry.final(result))
        except RecordTooLarge as exc:  # refused by the broker anyway: its limit is lower
            status, result = "failed", self._too_large(command, status, exc.size, fields)
            await self._write(command.trace, entry.final(result))
        await self._publish(command.trace, command.command_id, result)
        self.metrics.commands.labels(command.action, status).inc()
        return status

    def _size(self, entry: Entry, result: bytes, trace: TraceContext | None) -> int:
        """The larger of the two records: the ledger entry and the result."""
        record = stored_result_record(entry.command_id, result, trace)
        return max(size_of(ledger_record(entry)), size_of(record))

    def _too_large(
        self, command: Command, status: Status, size: int | None, fields: Mapping[str, Any]
    ) -> bytes:
        limit = self.results.max_record_size
        size_text = f"{size} bytes" if size is not None else "too large"
        message = (
            f"the {command.action} result ({size_text}) is over Kafka's record size limit "
            f"({limit} bytes)"
        )
        details: dict[str, Any] = {"size": size, "limit": limit, "resultStatus": status}
        connector = fields.get("connector")
        if isinstance(connector, Mapping) and connector.get("id") is not None:
            details["connectorId"] = connector.get("id")
            message += f"; connector {connector.get('id')}"
        channel = fields.get("channel")
        if isinstance(channel, Mapping):
            details["channelId"] = channel.get("id")
            details["channelStatus"] = channel.get("status")
        error = fields.get("error")
        if isinstance(error, Mapping):
            details["errorCode"] = error.get("code")
        if command.action == "list":
            message += "; narrow the list with templateRef"
        elif command.action == "create":
            message += f"; the create would have {status}"
        return self._result(
            command, "failed", error=error_body("result_too_large", message, details=details)
        )
