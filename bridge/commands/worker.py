"""The command consumer: fetch -> validate -> execute -> result -> commit.

Records with the same key run in order, one at a time ("lanes"); different keys run
concurrently up to ``BRIDGE_COMMANDS_MAX_IN_FLIGHT``. An offset is committed only once
it and every offset before it in its partition finished (results published). Fetching
pauses while too much is buffered. On revocation the partition's lanes are cancelled
(the ledger lets the next owner resume); on shutdown the worker stops fetching, drains
in-flight commands within a deadline, commits what finished and leaves the group.

Each record is one unit of a trace (contract 13): its ``traceparent``/``tracestate``
headers are the parent of a consumer span (exported or not, ``bridge.tracing``) whose
context the command carries to the ledger, Bird and every result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from bridge.commands.executor import Executor
from bridge.commands.ledger import Ledger
from bridge.commands.offsets import OffsetTracker
from bridge.commands.parse import parse_command
from bridge.commands.results import dead_letter_record
from bridge.config import Config
from bridge.errors import InvalidCommand, LedgerRecordMissing, RecordTooLarge
from bridge.kafka.clients import consumer_settings, start_client, stop_client
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from bridge.retry import KAFKA_BACKOFF, Retry
from bridge.tasks import stop_task
from bridge.tracecontext import TraceContext, from_kafka_headers
from bridge.tracing import SpanScope, Tracing

log = structlog.get_logger("bridge.commands")

Message: TypeAlias = ConsumerRecord[bytes, bytes]
LaneKey: TypeAlias = tuple[TopicPartition, bytes | None]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: CommandWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.worker.synced.clear()
        await self.worker.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Another replica may have worked on these partitions: read its ledger writes
        # first. aiokafka may hand out records before this returns: lanes wait for it.
        await self.worker.ledger.sync()
        self.worker.synced.set()
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))


class CommandWorker:
    def __init__(
        self,
        config: Config,
        publisher: Publisher,
        ledger: Ledger,
        executor: Executor,
        metrics: Metrics,
        *,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.tracing = tracing or Tracing()
        self.publisher = publisher
        self.ledger = ledger
        self.executor = executor
        self.metrics = metrics
        self.max_in_flight = config.commands.max_in_flight
        self.slots = asyncio.Semaphore(self.max_in_flight)
        self.lanes: dict[LaneKey, tuple[deque[Message], asyncio.Task[None]]] = {}
        self.trackers: dict[TopicPartition, OffsetTracker] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.started = False
        self._stopping = asyncio.Event()
        self.synced = asyncio.Event()  # the ledger has been read up to this assignment
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._last_commit = 0.0
        # Fetch positions of assigned partitions this replica has no records of yet (lag).
        self._positions: dict[TopicPartition, int] = {}
        metrics.consumer_lag.source = self.consumer_lag
        metrics.commands_oldest_unfinished_age.set_function(
            lambda: self.oldest_unfinished_age(time.time())
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="command-worker")

    async def _main(self) -> None:
        await self.publisher.ready.wait()
        retry = Retry(KAFKA_BACKOFF)
        while not self._stopping.is_set():
            try:
                await self.ledger.start()
                consumer = AIOKafkaConsumer(
                    **consumer_settings(self.config.kafka, group=self.config.kafka.consumer_group)
                )
                consumer.subscribe([self.config.topics.commands], listener=_Rebalance(self))
                await start_client(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("command consumer cannot start, retrying", error=repr(exc))
                await self.ledger.stop()
                await retry.wait()
                continue
            except BaseException:
                await self.ledger.stop()
                raise
            self.consumer = consumer
            self.started = True
            log.info("command worker started", topic=self.config.topics.commands)
            await self._consume(consumer)
            return

    def connected(self) -> bool:
        """Readiness: started, and the group coordinator is known (aiokafka forgets it when
        heartbeats fail, e.g. while Kafka is unreachable)."""
        if not self.started or self.consumer is None:
            return False
        return group_coordinator_known(self.consumer)

    async def stop(self, drain_s: float) -> None:
        """Stop fetching, let in-flight commands finish within ``drain_s``, commit, leave."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=2)
            await stop_task(self._task)
        tasks = [task for _, task in self.lanes.values()]
        if tasks:
            log.info("draining in-flight commands", lanes=len(tasks), deadline_s=drain_s)
            _, pending = await asyncio.wait(tasks, timeout=drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning(
                    "commands cancelled at shutdown; they resume on redelivery", count=len(pending)
                )
        if self.consumer is not None:
            await self._commit(force=True)
            with contextlib.suppress(Exception):
                await stop_client(self.consumer)
        await self.ledger.stop()
        self.started = False

    # --- fetch loop -----------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping.is_set():
            self._backpressure(consumer)
            batches = await consumer.getmany(timeout_ms=200, max_records=self.max_in_flight)
            for tp, records in batches.items():
                tracker = self.trackers.setdefault(tp, OffsetTracker())
                for record in records:
                    tracker.add(record.offset)
                    self._submit(tp, record)
            await self._note_positions(consumer)
            await self._commit()

    async def _note_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Remember where this replica starts in each assigned partition it has fetched from
        (a high-water mark is known) but received no record of yet: its lag is counted from
        there. The position is valid once a fetch answered, so asking costs no request
        (the timeout only guards against a reset racing with it)."""
        new = [
            tp
            for tp in consumer.assignment()
            if tp not in self.trackers
            and tp not in self._positions
            and consumer.highwater(tp) is not None
        ]
        for tp in new:
            with contextlib.suppress(IllegalStateError, TimeoutError):  # revoked meanwhile
                async with asyncio.timeout(1.0):
                    self._positions[tp] = await consumer.position(tp)

    # --- what the metrics read at scrape time ----------------------------------------

    def consumer_lag(self) -> dict[int, int]:
        """Per assigned partition with a known high-water mark: the records a restart would
        still have to process (high-water mark minus the next offset to commit)."""
        consumer = self.consumer
        if consumer is None:
            return {}
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            tracker = self.trackers.get(tp)
            start = tracker.unfinished_from() if tracker is not None else self._positions.get(tp)
            if end is not None and start is not None:
                lag[tp.partition] = max(0, end - start)
        return lag

    def oldest_unfinished_age(self, now: float) -> float:
        """Seconds since the Kafka timestamp of the oldest record fetched and not finished
        (``now``: epoch seconds); 0 when none."""
        stamps = [
            record.timestamp
            for queue, _ in self.lanes.values()
            for record in queue
            if record.timestamp >= 0
        ]
        return max(0.0, now - min(stamps) / 1000) if stamps else 0.0

    def _buffered(self) -> int:
        return sum(len(queue) for queue, _ in self.lanes.values())

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        buffered = self._buffered()
        if not self._paused and buffered >= 2 * self.max_in_flight:
            consumer.pause(*consumer.assignment())
            self._paused = True
        elif self._paused and buffered < self.max_in_flight:
            consumer.resume(*consumer.assignment())
            self._paused = False

    def _submit(self, tp: TopicPartition, record: Message) -> None:
        key: LaneKey = (tp, record.key)
        lane = self.lanes.get(key)
        if lane is not None:
            lane[0].append(record)
            return
        queue: deque[Message] = deque([record])
        task = asyncio.create_task(self._run_lane(key, queue))
        self.lanes[key] = (queue, task)

    async def _run_lane(self, key: LaneKey, queue: deque[Message]) -> None:
        tp = key[0]
        try:
            while queue:
                record = queue[0]
                await self.synced.wait()
                async with self.slots:
                    await self._handle_safely(record)
                queue.popleft()
                tracker = self.trackers.get(tp)
                if tracker is not None:
                    tracker.done(record.offset)
        finally:
            if self.lanes.get(key, (None, None))[0] is queue:
                del self.lanes[key]

    async def _commit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.consumer is None or (
            not force and now - self._last_commit < self.config.commands.commit_interval_s
        ):
            return
        self._last_commit = now
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, tracker in self.trackers.items():
            offset = tracker.committable()
            if offset is not None:
                offsets[tp] = OffsetAndMetadata(offset, "")
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("offset commit failed; records will be redelivered", error=repr(exc))
            return
        for tp, meta in offsets.items():
            self.trackers[tp].committed = meta.offset

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Partitions leave this worker: stop their lanes, commit what finished, forget them."""
        lanes = [(key, task) for key, (_, task) in self.lanes.items() if key[0] in revoked]
        for _, task in lanes:
            task.cancel()
        await asyncio.gather(*(task for _, task in lanes), return_exceptions=True)
        await self._commit(force=True)
        for tp in revoked:
            self.trackers.pop(tp, None)
            self._positions.pop(tp, None)
        if revoked:
            log.info(
                "partitions revoked",
                partitions=sorted(tp.partition for tp in revoked),
                cancelled=len(lanes),
            )

    # --- one record -----------------------------------------------------------------

    async def _handle_safely(self, record: Message) -> None:
        """``_handle``, and whatever it raises (a bug) is logged and dead-lettered: the lane
        goes on and the offset is committed. Only cancellation stops a lane."""
        with self.tracing.span(
            f"process {record.topic}",
            from_kafka_headers(record.headers),
            kind="consumer",
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
            },
        ) as span:
            await self._handle_in(span, record)

    async def _handle_in(self, span: SpanScope, record: Message) -> None:
        try:
            await self._handle(record, span)
        except Exception as exc:
            log.exception(
                "command record failed unexpectedly; dead-lettering it",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
            try:
                await self._dead_letter(
                    record, f"internal error: {type(exc).__name__}", None, label="internal_error"
                )
            except Exception:
                # Nothing is left to try: say loudly which record is skipped.
                log.exception(
                    "command record skipped: it could not be dead-lettered",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )

    async def _handle(self, record: Message, span: SpanScope) -> None:
        """Never raises (but for cancellation): a bad record must not block its partition.
        ``span``: this record's, whose context the command carries."""
        bound = log.bind(topic=record.topic, partition=record.partition, offset=record.offset)
        started = time.perf_counter()
        try:
            command = parse_command(
                record.value,
                default_workspace_id=self.config.bird.workspace_id,
                workspaces=self.config.bird.workspace_ids,
            )
        except InvalidCommand as exc:
            span.set("bridge.outcome", "invalid")
            await self._reject(record, exc, bound, span.context)
            return
        except Exception as exc:  # a bug: the record must still not block its partition
            bound.exception("command could not be parsed")
            await self._dead_letter(
                record, f"internal error: {type(exc).__name__}", None, label="internal_error"
            )
            return
        bound = bound.bind(command_id=command.command_id, action=command.action)
        span.set("bridge.command_id", command.command_id)
        span.set("bridge.action", command.action)
        command = replace(command, trace=span.context)
        self.metrics.commands_in_flight.inc()
        try:
            with structlog.contextvars.bound_contextvars(command_id=command.command_id):
                outcome = await self.executor.run(command)
            span.set("bridge.outcome", outcome)
            if outcome in ("succeeded", "failed"):  # its final result is acknowledged
                self.metrics.command_duration.labels(command.action, outcome).observe(
                    max(0.0, time.time() - record.timestamp / 1000)
                )
            bound.info(
                "command",
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        except InvalidCommand as exc:
            span.set("bridge.outcome", "invalid")
            await self._reject(record, exc, bound, span.context)
        except asyncio.CancelledError:
            raise
        except RecordTooLarge as exc:  # e.g. a stored result a broker with a lower limit refuses
            span.set("bridge.outcome", "error")
            bound.error("a record of this command is too large for Kafka", size=exc.size)
            await self._dead_letter(
                record,
                f"record too large: {exc.size} bytes refused by Kafka",
                command.command_id,
                label="record_too_large",
            )
            self.metrics.commands.labels(command.action, "error").inc()
        except Exception as exc:
            span.set("bridge.outcome", "error")
            bound.exception("command failed unexpectedly")
            label = (
                "ledger_record_missing"
                if isinstance(exc, LedgerRecordMissing)
                else "internal_error"
            )
            await self._dead_letter(
                record, f"internal error: {type(exc).__name__}", command.command_id, label=label
            )
            self.metrics.commands.labels(command.action, "error").inc()
        finally:
            self.metrics.commands_in_flight.dec()

    async def _reject(
        self, record: Message, exc: InvalidCommand, bound: Any, trace: TraceContext | None
    ) -> None:
        """A failed ``invalid_command`` result where a commandId can be read (carrying the
        record's trace context), and a dead letter (with the record's own headers)."""
        bound.warning("invalid command", reason=exc.reason, command_id=exc.command_id)
        action = exc.action or "unknown"
        self.metrics.commands.labels(action, "invalid").inc()
        if exc.command_id is not None:
            try:
                await self.executor.reject(record.value, action, exc, trace=trace)
            except Exception:  # a bug: the dead letter below still says what was wrong
                bound.exception("failed result of an invalid command not published")
        await self._dead_letter(
            record, exc.reason, exc.command_id, label=invalid_command_reason(exc)
        )

    async def _dead_letter(
        self, record: Message, reason: str, command_id: str | None, *, label: str
    ) -> None:
        """Write the record's dead letter (``reason``: its ``dlq-reason`` text; ``label``: the
        metric's, one of ``DEAD_LETTER_REASONS``); one too large for Kafka is written without
        its value (``dead_letter_record``), so this never fails for size."""
        self.metrics.dead_letters.labels(label).inc()
        fields: dict[str, Any] = {
            "key": record.key,
            "value": record.value,
            "headers": tuple(record.headers or ()),
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "command_id": command_id,
        }
        dead = dead_letter_record(**fields, limit=self.publisher.max_record_size)
        if dead.header("dlq-value-omitted") is not None:
            log.warning(
                "dead letter too large for Kafka; written without its value",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                value_bytes=len(record.value or b""),
            )
        try:
            await self.publisher.publish_durably(self.config.topics.dead_letter, dead)
        except RecordTooLarge as exc:  # the broker's limit is below ours
            dead = dead_letter_record(**fields, refused_size=exc.size)
            await self.publisher.publish_durably(self.config.topics.dead_letter, dead)


def group_coordinator_known(consumer: AIOKafkaConsumer) -> bool:
    """Whether ``consumer`` knows its group's coordinator right now.

    aiokafka has no public way to ask: ``assignment()`` keeps its last value while the
    broker is unreachable, and no callback says that heartbeats fail. Its private
    ``_coordinator.coordinator_id`` is reset to None as soon as a heartbeat or commit
    finds the coordinator gone, which is what readiness must reflect. This is the one place
    that reads it; if a release renames it, readiness turns false (never wrongly true)."""
    coordinator = getattr(consumer, "_coordinator", None)
    return getattr(coordinator, "coordinator_id", None) is not None


def invalid_command_reason(exc: InvalidCommand) -> str:
    """The dead-letter metric label of an invalid command: what is wrong with the record as
    a whole (``no_value``, ``not_json``, ``not_an_object``; see ``parse_command``), else
    ``invalid_command`` (a field: the ``dlq-reason`` header names it)."""
    if exc.field == "$":
        message = exc.reason.removeprefix("$: ")
        if message.startswith("record has no value"):
            return "no_value"
        if message.startswith("not valid JSON"):
            return "not_json"
        if message.startswith("must be a JSON object"):
            return "not_an_object"
    return "invalid_command"
