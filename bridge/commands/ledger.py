"""The command ledger: what the bridge did per ``commandId``, kept in a compacted Kafka topic.

Every replica reads the whole topic at start and keeps tailing it, so a command that
moves to another replica (rebalance, crash) is recognised there. ``sync()`` makes sure
everything written before it is read: it writes a barrier record to each partition and
waits to read it back (this also works on brokers whose "latest offset" answer is wrong).
Entry states only move forward: started -> accepted -> final. I/O at the edges only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.config import Config
from bridge.events import Record
from bridge.kafka.clients import consumer_settings, topic_partitions
from bridge.kafka.publisher import Publisher

log = structlog.get_logger("bridge.ledger")

State = Literal["started", "accepted", "final"]
_RANK: dict[str, int] = {"started": 0, "accepted": 1, "final": 2}
BARRIER_KEY = b"\x00barrier"


class LedgerRecordMissing(LookupError):
    """A final entry's record cannot be read back from the ledger topic."""


@dataclass(frozen=True, slots=True)
class Entry:
    command_id: str
    fingerprint: str
    action: str
    state: State
    started_at: str
    connector_id: str | None = None
    connector: dict[str, Any] | None = None
    accepted_result: dict[str, Any] | None = None
    final_result: dict[str, Any] | None = None
    position: tuple[int, int] | None = None  # in memory only: see compact()

    def to_json(self) -> bytes:
        if self.state == "final" and self.final_result is None:
            raise ValueError("a compacted ledger entry cannot be written again")
        return orjson.dumps(
            {
                "commandId": self.command_id,
                "fingerprint": self.fingerprint,
                "action": self.action,
                "state": self.state,
                "startedAt": self.started_at,
                "connectorId": self.connector_id,
                "connector": self.connector,
                "acceptedResult": self.accepted_result,
                "finalResult": self.final_result,
            }
        )

    @classmethod
    def from_json(cls, value: bytes) -> Entry:
        raw = orjson.loads(value)
        return cls(
            command_id=raw["commandId"],
            fingerprint=raw["fingerprint"],
            action=raw["action"],
            state=raw["state"],
            started_at=raw["startedAt"],
            connector_id=raw.get("connectorId"),
            connector=raw.get("connector"),
            accepted_result=raw.get("acceptedResult"),
            final_result=raw.get("finalResult"),
        )

    def accepted(self, connector: dict[str, Any], result: dict[str, Any] | None) -> Entry:
        return replace(
            self,
            state="accepted",
            connector_id=str(connector.get("id")),
            connector=connector,
            accepted_result=result,
        )

    def final(self, result: dict[str, Any]) -> Entry:
        """The final entry holds the result only (no connector, no accepted result): a
        final entry is read back for its result alone, and its record stays about the
        size of the result (both must fit in a Kafka record)."""
        return replace(
            self, state="final", final_result=result, connector=None, accepted_result=None
        )

    def compact(self, position: tuple[int, int]) -> Entry:
        """What memory keeps of a final entry: who it is and where its record is in the
        ledger topic (partition, offset), not the result. A command seen again after it
        finished is rare; its result is read back from the topic then (``final_value``)."""
        return Entry(
            command_id=self.command_id,
            fingerprint=self.fingerprint,
            action=self.action,
            state="final",
            started_at=self.started_at,
            connector_id=self.connector_id,
            position=position,
        )


def newer(current: Entry | None, candidate: Entry) -> bool:
    return current is None or _RANK[candidate.state] >= _RANK[current.state]


@dataclass
class Ledger:
    """``entries`` holds every command started within ``BRIDGE_COMMANDS_IDEMPOTENCY_WINDOW_S``;
    a final one only as its place in the topic (``Entry.compact``), and older final entries
    are forgotten, bounding memory."""

    config: Config
    publisher: Publisher
    entries: dict[str, Entry] = field(default_factory=dict)
    _expiries: deque[tuple[float, str]] = field(default_factory=deque)
    _positions: dict[int, int] = field(default_factory=dict)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _reader: AIOKafkaConsumer | None = None
    _reader_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def topic(self) -> str:
        return self.config.topics.ledger

    def get(self, command_id: str) -> Entry | None:
        return self.entries.get(command_id)

    def claimed_connectors(self) -> set[str]:
        return {e.connector_id for e in self.entries.values() if e.connector_id}

    @staticmethod
    def record_of(entry: Entry) -> Record:
        return Record(key=entry.command_id.encode(), value=entry.to_json())

    async def write(self, entry: Entry) -> None:
        """Durably record ``entry`` (acks=all), then remember it. Raises ``RecordTooLarge``
        for an entry over Kafka's record limit (callers check with ``record_of`` first)."""
        metadata = await self.publisher.publish_durably(self.topic, self.record_of(entry))
        self._remember(entry, (metadata.partition, metadata.offset))

    async def final_value(self, entry: Entry) -> bytes | None:
        """The final result of ``entry`` exactly as it was published; None if not final."""
        if entry.state != "final":
            return None
        if entry.final_result is None:
            assert entry.position is not None
            entry = await self._read_back(entry.command_id, entry.position)
        return orjson.dumps(entry.final_result)

    def _remember(self, entry: Entry, position: tuple[int, int]) -> None:
        if not newer(self.entries.get(entry.command_id), entry):
            return
        if entry.state != "final":
            self.entries[entry.command_id] = entry
            return
        expiry = _epoch(entry.started_at) + self.config.commands.idempotency_window_s
        now = time.time()
        if expiry <= now:
            self.entries.pop(entry.command_id, None)
            return
        self.entries[entry.command_id] = entry.compact(position)
        self._expiries.append((expiry, entry.command_id))
        # Only final entries are queued, and a final entry is never replaced by another
        # state: whatever sits under an expired id is that final entry.
        while self._expiries and self._expiries[0][0] <= now:
            self.entries.pop(self._expiries.popleft()[1], None)

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(**consumer_settings(self.config.kafka, group=None))
        await consumer.start()
        self._consumer = consumer
        partitions = await self._partitions(consumer)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._tail(consumer), name="ledger-tail")
        await self.sync()
        log.info("ledger loaded", entries=len(self.entries), partitions=len(partitions))

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        for _ in range(100):
            found = await topic_partitions(consumer, self.topic)
            if found:
                return found
            await asyncio.sleep(0.1)
        raise KafkaError(f"ledger topic {self.topic!r} does not exist")

    async def _tail(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            except KafkaError as exc:  # keep tailing: sync() waits on this loop
                log.warning("ledger read failed, retrying", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                for record in records:
                    self._apply(record.key, record.value, (tp.partition, record.offset))
                    self._positions[tp.partition] = record.offset + 1
            if batches:
                async with self._progress:
                    self._progress.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None, position: tuple[int, int]) -> None:
        if key is None or key == BARRIER_KEY:
            return
        if value is None:  # tombstone
            self.entries.pop(key.decode(errors="replace"), None)
            return
        try:
            entry = Entry.from_json(value)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("unreadable ledger record skipped", key=key.decode(errors="replace"))
            return
        self._remember(entry, position)

    async def _read_back(self, command_id: str, position: tuple[int, int]) -> Entry:
        """The final record of ``command_id``, read from ``position`` on (a later copy may
        have replaced it under compaction). Waits through a Kafka outage like a publish
        does (the command stays uncommitted meanwhile); raises ``LedgerRecordMissing`` once
        the partition was read to its end without it."""
        partition, offset = position
        tp = TopicPartition(self.topic, partition)
        key = command_id.encode()
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
                                found = Entry.from_json(record.value)
                                if found.state == "final" and found.final_result is not None:
                                    return found
                        end = reader.highwater(tp)
                        if not batches and end is not None and await reader.position(tp) >= end:
                            raise LedgerRecordMissing(
                                f"the final ledger record of this command is gone from "
                                f"{self.topic} partition {partition} (offset {offset} on)"
                            )
                except KafkaError as exc:
                    log.warning("ledger read-back failed, retrying", error=repr(exc))
                    await asyncio.sleep(1.0)

    async def _started_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(**consumer_settings(self.config.kafka, group=None))
            try:
                await reader.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await reader.stop()
                raise
            self._reader = reader
        return self._reader

    async def sync(self) -> None:
        """Return once every ledger record written before this call has been read."""
        assert self._consumer is not None
        targets: dict[int, int] = {}
        for tp in self._consumer.assignment():
            metadata = await self.publisher.publish_durably(
                self.topic, Record(key=BARRIER_KEY, value=b""), partition=tp.partition
            )
            targets[tp.partition] = metadata.offset + 1
        async with self._progress:
            await self._progress.wait_for(
                lambda: all(self._positions.get(p, 0) >= t for p, t in targets.items())
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for consumer in (self._consumer, self._reader):
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()


def _epoch(rfc3339_time: str) -> float:
    try:
        return datetime.fromisoformat(rfc3339_time).timestamp()
    except ValueError:
        return time.time()  # unreadable: keep it for a whole window
