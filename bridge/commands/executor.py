"""Executes one validated command against Bird and publishes its results.

    create: ledger started -> POST -> ledger accepted -> result accepted
            -> follow connector + channel -> ledger final -> result succeeded / failed
    delete / get / list: call -> ledger final -> result

The ledger is written before each result, so a command seen again (redelivery, crash,
rebalance) resumes from what was done: a final result is published again byte for
byte, an accepted create is followed again, and a create that was started but never
answered is first looked for at Bird before it is sent again. I/O through ``BirdClient``
and ``Publisher`` only.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog

from bridge.bird.client import AmbiguousBirdError, BirdClient
from bridge.bird.policy import Backoff
from bridge.commands.ledger import Entry, Ledger, LedgerRecordMissing
from bridge.commands.parse import Command
from bridge.commands.results import MAX_REASON, Status, error_body, result_record, shorten
from bridge.commands.status import classify_channel_status
from bridge.config import Config
from bridge.errors import BirdError, InvalidCommand, RecordTooLarge
from bridge.events import Record, rfc3339, to_record
from bridge.kafka.publisher import Publisher
from bridge.kafka.size import size_of
from bridge.metrics import Metrics

log = structlog.get_logger("bridge.commands")

# How far Bird's clock may be behind ours when matching a connector to a started create.
CLOCK_SKEW = timedelta(minutes=2)


def _now() -> datetime:
    return datetime.now(UTC)


class Executor:
    def __init__(
        self,
        config: Config,
        bird: BirdClient,
        ledger: Ledger,
        publisher: Publisher,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.config = config
        self.commands = config.commands
        self.bird = bird
        self.ledger = ledger
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
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
        entry = self.ledger.get(command.command_id)
        if entry is not None and entry.fingerprint != command.fingerprint:
            # No result: the commandId's result already exists and must not change.
            raise InvalidCommand(
                "commandId",
                "already used for a different command; use a new commandId",
                command.command_id,
            )
        final = await self.ledger.final_value(entry) if entry is not None else None
        if final is not None:
            await self._emit_bytes(command.command_id, final)
            return "replayed"
        if command.action == "create":
            return await self._create(command, entry)
        deadline = time.monotonic() + self.commands.command_deadline_s
        try:
            status, fields = await self._read_or_delete(command, deadline)
        except BirdError as exc:
            status, fields = "failed", {"error": exc.as_result_error()}
        await self._finish(command, entry or self._started(command), status, **fields)
        return status

    async def _read_or_delete(
        self, command: Command, deadline: float
    ) -> tuple[Status, dict[str, Any]]:
        ws = command.workspace_id
        if command.action == "list":
            connectors = await self.bird.list_connectors(
                ws, command.template_ref, deadline=deadline
            )
            return "succeeded", {"connectors": connectors}
        assert command.connector_id is not None
        if command.action == "delete":
            existed = await self.bird.delete_connector(ws, command.connector_id, deadline=deadline)
            return "succeeded", {
                "extra": {"connectorId": command.connector_id, "alreadyDeleted": not existed}
            }
        connector = await self.bird.get_connector(ws, command.connector_id, deadline=deadline)
        channel = None
        channel_id = _channel_id(connector)
        if channel_id:
            channel = await self.bird.get_channel(ws, channel_id, deadline=deadline)
        return "succeeded", {"connector": connector, "channel": channel}

    # --- create -----------------------------------------------------------------------

    async def _create(self, command: Command, entry: Entry | None) -> str:
        deadline = time.monotonic() + self.commands.command_deadline_s
        if entry is not None and entry.state == "accepted" and entry.connector is not None:
            connector = entry.connector
            if entry.accepted_result is not None:
                await self._emit(entry.accepted_result)  # it may never have reached Kafka
            log.info("resuming create", connector_id=entry.connector_id)
        else:
            try:
                if entry is None:
                    entry = self._started(command)
                    await self.ledger.write(entry)
                    connector = await self._post_create(command, entry, deadline)
                else:
                    # Started before, never answered: Bird may have created it already.
                    found = await self._find_created(command, entry, deadline)
                    connector = found or await self._post_create(command, entry, deadline)
            except BirdError as exc:
                await self._finish(
                    command, entry or self._started(command), "failed", error=exc.as_result_error()
                )
                return "failed"
            entry = await self._accept(command, entry, connector)
        status, fields = await self._follow(command, connector)
        await self._finish(command, entry, status, **fields)
        return status

    async def _accept(self, command: Command, entry: Entry, connector: dict[str, Any]) -> Entry:
        """Ledger ``accepted``, then the ``accepted`` result. A connector too large for a Kafka
        record (with its result, in the ledger) publishes no ``accepted``: the ledger keeps
        what following needs (its id and channel), and the final result says what happened
        (``result_too_large``, naming the connector)."""
        accepted = self._result(command, "accepted", connector=connector)
        full = entry.accepted(connector, accepted)
        size = self._size(full, accepted)
        if size <= self.publisher.max_record_size:
            await self.ledger.write(full)
            await self._emit(accepted)
            return full
        log.warning(
            "accepted result too large for Kafka; not published",
            connector_id=connector.get("id"),
            size=size,
        )
        slim = entry.accepted(_slim(connector), None)
        await self.ledger.write(slim)
        return slim

    async def _post_create(self, command: Command, entry: Entry, deadline: float) -> dict[str, Any]:
        """POST the connector. A failure that leaves it unknown whether Bird created it is
        answered by looking for the connector before posting again."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.bird.create_connector(
                    command.workspace_id, command.connector, deadline=deadline
                )
            except AmbiguousBirdError as exc:
                log.warning("create outcome unknown; looking for the connector", error=exc.message)
                found = await self._find_created(command, entry, deadline)
                if found is not None:
                    return found
                delay = self.backoff.delay(attempt)
                if time.monotonic() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)

    async def _find_created(
        self, command: Command, entry: Entry, deadline: float
    ) -> dict[str, Any] | None:
        """The connector this command created, if Bird has one: same template, name and
        arguments, created after the command started, and not claimed by another command."""
        body = command.connector
        candidates = await self.bird.list_connectors(
            command.workspace_id, body.get("connectorTemplateRef"), deadline=deadline
        )
        since = datetime.fromisoformat(entry.started_at) - CLOCK_SKEW
        claimed = self.ledger.claimed_connectors()
        matches = [
            c
            for c in candidates
            if c.get("name") == body.get("name")
            and c.get("id") not in claimed
            and _created_after(c, since)
            and (c.get("arguments") in (None, {}) or c.get("arguments") == body.get("arguments"))
        ]
        if not matches:
            return None
        matches.sort(key=lambda c: str(c.get("createdAt", "")))
        log.info(
            "found the connector of a started create",
            connector_id=matches[0].get("id"),
            candidates=len(matches),
        )
        return matches[0]

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
                    channel_id = _channel_id(connector)
                    if channel_id is None:
                        connector = await self.bird.get_connector(
                            ws, connector_id, deadline=call_deadline
                        )
                        channel_id = _channel_id(connector)
                    if channel_id is not None:
                        channel = await self.bird.get_channel(
                            ws, channel_id, deadline=call_deadline
                        )
                        status = channel.get("status")
                        verdict = classify_channel_status(status)
                        if verdict == "succeeded":
                            outcome = "succeeded"
                            return "succeeded", {"connector": connector, "channel": channel}
                        if verdict == "failed":
                            outcome = "channel_failed"
                            return "failed", {
                                "connector": connector,
                                "channel": channel,
                                "error": error_body(
                                    "channel_failed",
                                    f"channel {channel_id} ended in status {status!r}",
                                    details=_reason(channel),
                                ),
                            }
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
                    seen = channel.get("status") if channel else "no channel yet"
                    limit = self.commands.follow_timeout_s
                    message = f"connector {connector_id} not active within {limit:g}s"
                    return "failed", {
                        "connector": connector,
                        "channel": channel,
                        "error": error_body(
                            "timeout", f"{message} (last status: {seen})", retryable=True
                        ),
                    }
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, max(5.0, self.commands.follow_interval_s))
        finally:
            self.metrics.follow_seconds.labels(outcome).observe(time.monotonic() - started)

    # --- results ------------------------------------------------------------------------

    def _started(self, command: Command) -> Entry:
        return Entry(
            command_id=command.command_id,
            fingerprint=command.fingerprint,
            action=command.action,
            state="started",
            started_at=rfc3339(self.clock()),
        )

    def _result(self, command: Command, status: Status, **fields: Any) -> dict[str, Any]:
        return self._result_for(command.command_id, command.action, status, **fields)

    def _result_for(
        self, command_id: str, action: str, status: Status, **fields: Any
    ) -> dict[str, Any]:
        record = result_record(
            command_id=command_id, action=action, status=status, now=self.clock(), **fields
        )
        return dict(orjson.loads(record.value))

    async def reject(self, value: bytes | None, action: str, exc: InvalidCommand) -> None:
        """The ``failed`` / ``invalid_command`` result of a record with a readable commandId,
        kept in the ledger like any final result: the same record seen again gets the same
        result again; a commandId that belongs to another command gets none."""
        assert exc.command_id is not None
        fingerprint = "invalid:" + hashlib.sha256(value or b"").hexdigest()
        entry = self.ledger.get(exc.command_id)
        if entry is None:
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
            await self.ledger.write(entry)
        if entry.fingerprint != fingerprint:
            return
        try:
            final = await self.ledger.final_value(entry)
        except LedgerRecordMissing as missing:  # the dead letter still says what was wrong
            log.warning("invalid command's earlier result is gone", error=str(missing))
            return
        if final is not None:
            await self._emit_bytes(exc.command_id, final)

    async def _finish(self, command: Command, entry: Entry, status: Status, **fields: Any) -> None:
        """Ledger ``final``, then the final result. A result that would not fit in a Kafka
        record (checked before anything is sent, the way the producer counts) is replaced by
        a ``failed`` one with ``result_too_large``, naming the size and the limit."""
        result = self._result(command, status, **fields)
        size = self._size(entry.final(result), result)
        if size > self.publisher.max_record_size:
            status, result = "failed", self._too_large(command, status, size, fields)
        try:
            await self.ledger.write(entry.final(result))
        except RecordTooLarge as exc:  # refused by the broker anyway: its limit is lower
            status, result = "failed", self._too_large(command, status, exc.size, fields)
            await self.ledger.write(entry.final(result))
        await self._emit(result)
        self.metrics.commands.labels(command.action, status).inc()

    def _size(self, entry: Entry, result: Mapping[str, Any]) -> int:
        """The larger of the two records: the ledger entry and the result."""
        return max(size_of(self.ledger.record_of(entry)), size_of(self._record(result)))

    def _too_large(
        self, command: Command, status: Status, size: int | None, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        limit = self.publisher.max_record_size
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

    @staticmethod
    def _record(result: Mapping[str, Any]) -> Record:
        command_id = str(result["subject"])
        return to_record(result, key=command_id, correlation_id=command_id)

    async def _emit(self, result: Mapping[str, Any]) -> None:
        await self.publisher.publish_durably(self.config.topics.results, self._record(result))

    async def _emit_bytes(self, command_id: str, value: bytes) -> None:
        """Publish a stored result again, byte for byte."""
        record = to_record(orjson.Fragment(value), key=command_id, correlation_id=command_id)
        await self.publisher.publish_durably(self.config.topics.results, record)


def _channel_id(connector: Mapping[str, Any]) -> str | None:
    channel = connector.get("channel")
    if isinstance(channel, Mapping):
        channel_id = channel.get("channelId")
        if isinstance(channel_id, str) and channel_id:
            return channel_id
    return None


def _created_after(connector: Mapping[str, Any], since: datetime) -> bool:
    try:
        created = datetime.fromisoformat(str(connector.get("createdAt")))
    except ValueError:
        return True  # no usable timestamp: do not rule it out
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created >= since


def _slim(connector: Mapping[str, Any]) -> dict[str, Any]:
    """What following a create needs of its connector: the id and the channel's id."""
    slim: dict[str, Any] = {"id": connector.get("id")}
    channel_id = _channel_id(connector)
    if channel_id is not None:
        slim["channel"] = {"channelId": channel_id}
    return slim


def _reason(channel: Mapping[str, Any]) -> dict[str, Any]:
    reason = channel.get("statusReason")
    return {"statusReason": reason} if reason else {}
