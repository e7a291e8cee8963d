"""The command ledger's Kafka side: what the bridge did per ``commandId``, kept in a
compacted topic. I/O only; what an entry means and how records change the memory is
``ledger_state.py`` (pure).

Every replica reads the whole topic at start and keeps tailing it into a compact index
(``LedgerState``: where each command's latest record is, about 60 to 90 bytes a command),
so a command that moves to another replica (rebalance, crash), or comes back under another
key, is recognised there. A hit is read back from the topic (``get``); a miss, the common
case, costs no I/O. ``sync()`` makes sure everything written before it is read: it writes
a barrier record to each partition and waits to read it back (this also works on brokers
whose "latest offset" answer is wrong).

The start reads the whole topic once: at a million commands that is over a gigabyte,
which aiokafka's CRC32C check alone takes seconds to verify. The tailing consumer skips
that check (``check_crcs=False``, as Kafka documents for speed): what it reads only
places a command in the index, and every decision on a hit is taken on the record read
back, by a reader that does check CRCs. A record that does not decode, or whose key is not
its commandId, is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Container
from dataclasses import dataclass, field, replace

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.commands.ledger_image import Manifest, UnusableSnapshot
from bridge.commands.ledger_snapshots import PARTITIONS as SNAPSHOT_PARTITIONS
from bridge.commands.ledger_snapshots import LedgerSnapshots
from bridge.commands.ledger_state import (
    BARRIER_KEY,
    INTERNAL_PREFIX,
    SNAPSHOT_MARKER_PREFIX,
    ClaimedConnectors,
    Entry,
    LedgerDecodeError,
    LedgerState,
    ledger_record,
)
from bridge.commands.ports import DurablePublisher
from bridge.config import Config
from bridge.errors import LedgerRecordMissing, RecordTooLarge
from bridge.events import Record, Tombstone
from bridge.kafka.clients import consumer_settings, start_client, stop_client, topic_partitions
from bridge.retry import KAFKA_BACKOFF, Retry
from bridge.tasks import stop_task

log = structlog.get_logger("bridge.ledger")


class LedgerBroken(RuntimeError):
    """The index stopped following the ledger topic (``Ledger.failure``)."""


SNAPSHOT_LOAD_TIMEOUT_S = 120.0  # then the whole ledger is read instead
SNAPSHOT_CHECK_S = 10.0
SNAPSHOT_RETRY_S = 60.0


@dataclass
class Ledger:
    """The ``LedgerStore`` on Kafka: writes acknowledged entries, tails the topic into a
    ``LedgerState``, and reads a final result back from the topic when asked."""

    config: Config
    publisher: DurablePublisher
    state: LedgerState = field(init=False)
    _positions: dict[int, int] = field(default_factory=dict)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _reader: AIOKafkaConsumer | None = None
    _reader_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    snapshots: LedgerSnapshots = field(init=False)
    _snapshot_task: asyncio.Task[None] | None = None
    _covered: int = 0  # ledger records (offsets, summed) the latest known snapshot covers
    _own_snapshot: Manifest | None = None  # the latest this replica wrote
    loaded_snapshot: str | None = None  # the generation of the snapshot the start loaded
    failure: Exception | None = None  # why the tail stopped (a bug); the process must restart

    def __post_init__(self) -> None:
        self.state = LedgerState(self.config.commands.idempotency_window_s)
        self.snapshots = LedgerSnapshots(self.config, self.publisher)

    @property
    def topic(self) -> str:
        return self.config.topics.ledger

    def records_after_snapshot(self) -> int:
        """Ledger records (offsets, summed over the partitions) this replica has read past
        the latest usable snapshot it knows of: what a start now reads besides the
        snapshot; every record while there is none (or snapshots are off)."""
        return max(0, sum(self._positions.values()) - self._covered)

    def size(self) -> int:
        """The commands indexed (every state; final ones within the window)."""
        return len(self.state)

    async def get(self, command_id: str) -> Entry | None:
        """The latest entry of ``command_id``, read back from the topic; None if the ledger
        has none, or only a final one older than the window. Raises ``LedgerRecordMissing``
        when the index knows a record the topic no longer has (retention, a restarted
        memory-only broker)."""
        if self.failure is not None:
            await self._halt()
        position = self.state.locate(command_id)
        if position is None:
            return None
        entry = await self._read_back(command_id, position)
        if entry is None or self.state.expired(entry, time.time()):
            return None
        return entry

    def claimed_connectors(self) -> Container[str]:
        return ClaimedConnectors(self.state)

    async def write(self, entry: Entry) -> None:
        """Durably record ``entry`` (acks=all), then remember it. Raises ``RecordTooLarge``
        for an entry over Kafka's record limit (callers check with ``ledger_record`` first)."""
        metadata = await self.publisher.publish_durably(self.topic, ledger_record(entry))
        self.state.apply(entry, (metadata.partition, metadata.offset), time.time())

    async def final_value(self, entry: Entry) -> bytes | None:
        """The final result of ``entry`` exactly as it was published; None if not final."""
        if entry.state != "final":
            return None
        if entry.final_result is not None:
            return entry.final_result
        assert entry.position is not None
        found = await self._read_back(entry.command_id, entry.position)
        if found is None or found.final_result is None:
            raise LedgerRecordMissing(
                f"no final ledger record of this command at {self.topic} {entry.position}"
            )
        return found.final_result

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **consumer_settings(self.config.kafka, group=None), check_crcs=False
        )
        await start_client(consumer)
        self._consumer = consumer
        partitions = await self._partitions(consumer)
        consumer.assign(partitions)
        manifest = await self._load_snapshot(partitions) if self._snapshots_on else None
        if manifest is None:
            await consumer.seek_to_beginning(*partitions)
            self.state.reserve(await _records_in(consumer, partitions))
        else:
            for tp in partitions:
                if tp.partition in manifest.positions:
                    consumer.seek(tp, manifest.positions[tp.partition])
                else:  # a partition added since the snapshot
                    await consumer.seek_to_beginning(tp)
        self._task = asyncio.create_task(self._tail(consumer), name="ledger-tail")
        await self.sync()
        log.info(
            "ledger loaded",
            entries=len(self.state),
            partitions=len(partitions),
            snapshot=manifest.generation if manifest else None,
        )
        if self._snapshots_on:
            self._snapshot_task = asyncio.create_task(
                self._keep_snapshots(), name="ledger-snapshots"
            )

    @property
    def _snapshots_on(self) -> bool:
        return self.config.commands.ledger_snapshot_records > 0

    async def _load_snapshot(self, partitions: list[TopicPartition]) -> Manifest | None:
        """Load the latest usable snapshot into the index: its manifest, or None (the
        whole ledger is read then). Whatever goes wrong is logged, never raised."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(SNAPSHOT_LOAD_TIMEOUT_S):
                manifest = await self.snapshots.latest()
                if manifest is None:
                    log.info("no ledger snapshot: reading the whole ledger")
                    return None
                await self._check_markers(manifest, partitions)
                image = await self.snapshots.read(manifest)
                self.state.load(image)
        except (UnusableSnapshot, ValueError, KafkaError, TimeoutError) as exc:
            log.warning(
                "ledger snapshot not used: reading the whole ledger", reason=str(exc) or repr(exc)
            )
            return None
        self._positions = dict(manifest.positions)
        self._covered = sum(manifest.positions.values())
        self.loaded_snapshot = manifest.generation
        log.info(
            "ledger snapshot loaded",
            generation=manifest.generation,
            commands=manifest.commands,
            seconds=round(time.monotonic() - started, 3),
        )
        return manifest

    async def _check_markers(self, manifest: Manifest, partitions: list[TopicPartition]) -> None:
        """That the ledger topic is the one the snapshot was taken of: each partition holds
        the snapshot's marker at the offset the manifest names, and no fewer records than
        the snapshot covers."""
        current = {tp.partition for tp in partitions}
        if not set(manifest.positions) <= current:
            raise UnusableSnapshot("the ledger topic has fewer partitions than the snapshot's")
        key = SNAPSHOT_MARKER_PREFIX + manifest.generation.encode()
        for partition, offset in manifest.markers.items():
            found = await self._record_at(partition, offset)
            if found != key:
                raise UnusableSnapshot(
                    f"the ledger topic's partition {partition} does not hold the snapshot's "
                    f"marker at offset {offset}"
                )

    async def _record_at(self, partition: int, offset: int) -> bytes | None:
        """The key of the ledger record at ``offset`` in ``partition``; None if there is
        none (removed, or the partition ends before)."""
        tp = TopicPartition(self.topic, partition)
        async with self._reader_lock:
            reader = await self._started_reader()
            reader.assign([tp])
            reader.seek(tp, offset)
            while True:
                batches = await reader.getmany(tp, timeout_ms=500, max_records=1)
                for record in batches.get(tp, []):
                    return record.key if record.offset == offset else None
                end = reader.highwater(tp)
                if end is not None and await reader.position(tp) >= end:
                    return None

    async def _keep_snapshots(self) -> None:
        """Write a snapshot once the ledger has grown by the configured number of records
        since the latest one (this replica's or another's)."""
        threshold = self.config.commands.ledger_snapshot_records
        partitions = await self.snapshots.partitions()
        if partitions < SNAPSHOT_PARTITIONS:
            log.warning(
                "no ledger snapshots written: the snapshots topic is missing or too small",
                topic=self.snapshots.topic,
                partitions=partitions,
                needed=SNAPSHOT_PARTITIONS,
            )
            return
        while self.failure is None:
            if self.records_after_snapshot() >= threshold:
                try:
                    self._covered = max(self._covered, await self._latest_covers())
                    if self.records_after_snapshot() >= threshold:
                        await self.write_snapshot()
                except RecordTooLarge as exc:  # the broker's limit is under a chunk's size
                    log.warning(
                        "no ledger snapshots written: the broker refuses their records",
                        topic=self.snapshots.topic,
                        size=exc.size,
                        hint="raise the topic's max.message.bytes to 1 MiB or more",
                    )
                    return
                except (KafkaError, LedgerBroken) as exc:
                    log.warning("ledger snapshot not written", reason=str(exc) or repr(exc))
                    await asyncio.sleep(SNAPSHOT_RETRY_S)
            await asyncio.sleep(SNAPSHOT_CHECK_S)

    async def _latest_covers(self) -> int:
        """How many ledger records (offsets, summed) the latest snapshot covers, if a
        replica starting now could load it; 0 if none could (none written, another format
        or window, a ledger topic recreated since): then this replica writes one."""
        assert self._consumer is not None
        try:
            manifest = await self.snapshots.latest()
            if manifest is None:
                return 0
            if any(self._positions.get(p, 0) < end for p, end in manifest.positions.items()):
                raise UnusableSnapshot("it covers more of the ledger than this replica read")
            await self._check_markers(manifest, list(self._consumer.assignment()))
        except UnusableSnapshot as exc:
            log.info("the latest ledger snapshot is not usable: writing one", reason=str(exc))
            return 0
        return sum(manifest.positions.values())

    async def write_snapshot(self) -> Manifest:
        """Write a snapshot of the index: markers to every ledger partition first, read
        back by the tail; then the index from the moment they are read (it holds every
        record before ``positions``: ``LedgerState.export_in_steps``); then the manifest.
        The previous snapshot this replica wrote is removed."""
        generation = f"{int(time.time())}-{secrets.token_hex(6)}"
        markers = await self._mark(SNAPSHOT_MARKER_PREFIX + generation.encode())
        positions = dict(self._positions)
        commands = len(self.state)
        manifest = await self.snapshots.write(
            generation,
            self.state.export_in_steps(),  # the first step is copied before any await
            positions=positions,
            markers=markers,
            commands=commands,
        )
        self._covered = max(self._covered, sum(positions.values()))
        previous, self._own_snapshot = self._own_snapshot, manifest
        if previous is not None:
            await self.snapshots.forget(previous)
            for partition in previous.markers:
                await self.publisher.publish_durably(
                    self.topic,
                    Tombstone(SNAPSHOT_MARKER_PREFIX + previous.generation.encode()),
                    partition=partition,
                )
        log.info(
            "ledger snapshot written",
            generation=generation,
            commands=commands,
            chunks=len(manifest.chunks),
        )
        return manifest

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        found = await topic_partitions(consumer, self.topic, wait_s=10.0)
        if found:
            return found
        raise KafkaError(f"ledger topic {self.topic!r} does not exist")

    async def _tail(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await self._follow(consumer)
        except Exception as exc:  # a bug: the index would silently fall behind the topic
            self.failure = exc
            log.exception(
                "ledger tail stopped: the index no longer follows the ledger; commands wait, "
                "and /healthz answers 503 so that the process is restarted"
            )
            async with self._progress:
                self._progress.notify_all()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        retry = Retry(KAFKA_BACKOFF)
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            except KafkaError as exc:  # keep tailing: sync() waits on this loop
                log.warning("ledger read failed, retrying", error=repr(exc))
                await retry.wait()
                continue
            retry.reset()
            now = time.time()
            for tp, records in batches.items():
                self.state.apply_records(tp.partition, records, now)
                if records:
                    self._positions[tp.partition] = records[-1].offset + 1
            self.state.expire(now)
            if batches:
                async with self._progress:
                    self._progress.notify_all()

    def broken(self) -> str | None:
        """Why the process must be restarted, if it must."""
        if self.failure is None:
            return None
        return f"the ledger's index stopped following {self.topic}: {type(self.failure).__name__}"

    async def _halt(self) -> None:
        """Wait for ever (until cancelled by the shutdown): the index stopped following the
        ledger, and a command decided on it could run twice. Its record stays uncommitted,
        and is redelivered to a replica whose index is whole."""
        await asyncio.Event().wait()

    async def _read_back(self, command_id: str, position: tuple[int, int]) -> Entry | None:
        """The entry of ``command_id`` from its ledger record at ``position`` or later (a
        later state may have replaced it under compaction), with its results as published.
        None when the record at ``position`` belongs to another command (two commandIds
        with one 64-bit hash). Waits through a Kafka outage like a publish does (the command
        stays uncommitted meanwhile); raises ``LedgerRecordMissing`` once the partition was
        read to its end without it."""
        partition, offset = position
        tp = TopicPartition(self.topic, partition)
        key = command_id.encode()
        retry = Retry(KAFKA_BACKOFF)
        async with self._reader_lock:
            while True:
                try:
                    reader = await self._started_reader()
                    reader.assign([tp])
                    reader.seek(tp, offset)
                    while True:
                        batches = await reader.getmany(tp, timeout_ms=500, max_records=500)
                        for record in batches.get(tp, []):
                            if record.key == key and record.value is not None:
                                found = _entry(record.value)
                                if found is not None:
                                    return replace(found, position=(partition, record.offset))
                            elif record.offset == offset and not (record.key or b"").startswith(
                                INTERNAL_PREFIX
                            ):
                                return None  # the index's hash of another commandId
                        end = reader.highwater(tp)
                        if not batches and end is not None and await reader.position(tp) >= end:
                            raise LedgerRecordMissing(
                                f"the final ledger record of this command is gone from "
                                f"{self.topic} partition {partition} (offset {offset} on)"
                            )
                except KafkaError as exc:
                    log.warning("ledger read-back failed, retrying", error=repr(exc))
                    await retry.wait()

    async def _started_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            # Small fetches: a read-back wants one record, not a megabyte after it.
            reader = AIOKafkaConsumer(
                **consumer_settings(self.config.kafka, group=None),
                max_partition_fetch_bytes=64 * 1024,
            )
            await start_client(reader)
            self._reader = reader
        return self._reader

    async def sync(self) -> None:
        """Return once every ledger record written before this call has been read; raises
        ``LedgerBroken`` once the index stopped following the ledger."""
        await self._mark(BARRIER_KEY)

    async def _mark(self, key: bytes) -> dict[int, int]:
        """Write a record keyed ``key`` to every ledger partition and wait until the tail
        has read them: their offsets by partition."""
        assert self._consumer is not None
        offsets: dict[int, int] = {}
        for tp in self._consumer.assignment():
            metadata = await self.publisher.publish_durably(
                self.topic, Record(key=key, value=b""), partition=tp.partition
            )
            offsets[tp.partition] = metadata.offset
        async with self._progress:
            await self._progress.wait_for(
                lambda: (
                    self.failure is not None
                    or all(self._positions.get(p, 0) > o for p, o in offsets.items())
                )
            )
        if self.failure is not None:
            raise LedgerBroken(self.broken())
        return offsets

    async def stop(self) -> None:
        task, self._snapshot_task = self._snapshot_task, None
        await stop_task(task)
        task, self._task = self._task, None
        await stop_task(task)
        consumers = (self._consumer, self._reader)
        self._consumer = self._reader = None  # a start after this stop makes new ones
        for consumer in consumers:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await stop_client(consumer)


async def _records_in(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    """How many records the partitions hold (a hint for the index's size: 0 when the broker
    cannot tell)."""
    try:
        first = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
    except KafkaError:
        return 0
    return max(0, sum(int(end[tp]) - int(first[tp]) for tp in partitions))


def _entry(value: bytes) -> Entry | None:
    try:
        return Entry.from_json(value)
    except LedgerDecodeError:
        return None
