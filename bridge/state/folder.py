"""The channel-state fold in the commands role (I/O around ``fold.py``).

A consumer group of its own reads ``bird.channel-events``; the replica that owns events
partition ``p`` is the only writer of state partition ``p`` (keys are channel ids, both
topics have the same partitions, so a channel's events and state share a partition
number). On assignment it reads its state partitions to the end, then folds events from
the group's committed offset: each batch is decided in memory, at most one record per
channel is written (acks=all), then the offsets are committed. Revocation waits for the
batch in hand, so the next owner reads every write. Owning events partition 0 makes this
replica the one that runs periodic reconciliation (``on_leader``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from bridge.config import Config
from bridge.events import Record
from bridge.kafka.clients import consumer_settings, start_client, stop_client, topic_partitions
from bridge.kafka.publisher import Publisher
from bridge.kafka.scan import Message, scan_partitions
from bridge.metrics import Metrics
from bridge.retry import KAFKA_BACKOFF, Retry
from bridge.state.fold import Known, channel_event, decide, known_of, read_state, state_record
from bridge.tasks import stop_task

log = structlog.get_logger("bridge.state")

LEADER_PARTITION = 0
GROUP_SUFFIX = "-channel-state"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, folder: StateFolder) -> None:
        self.folder = folder

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.folder.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.folder.assign({tp.partition for tp in assigned})


class StateFolder:
    def __init__(
        self,
        config: Config,
        publisher: Publisher,
        metrics: Metrics,
        *,
        on_leader: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.publisher = publisher
        self.metrics = metrics
        self.on_leader = on_leader
        self.known: dict[int, dict[str, Known]] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.leader = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._decisions = {
            name: metrics.channel_state_events.labels(name)
            for name in ("write", "older", "same", "unordered", "not_a_channel")
        }

    @property
    def group(self) -> str:
        return self.config.kafka.consumer_group + GROUP_SUFFIX

    async def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="channel-state-fold")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await stop_client(consumer)  # revokes (commits) and leaves the group
        if self.leader and self.on_leader is not None:
            self.leader = False
            await self.on_leader(False)

    async def _main(self) -> None:
        await self.publisher.ready.wait()
        retry = Retry(KAFKA_BACKOFF)
        while True:
            consumer = AIOKafkaConsumer(**consumer_settings(self.config.kafka, group=self.group))
            consumer.subscribe([self.config.topics.events], listener=_Rebalance(self))
            try:
                await start_client(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("channel-state consumer cannot start, retrying", error=repr(exc))
                await retry.wait()
                continue
            retry.reset()
            self.consumer = consumer
            log.info("channel-state fold started", group=self.group)
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    if batches:
                        async with self._lock:
                            await self._fold(consumer, batches)
                except (KafkaError, OSError) as exc:  # not committed: folded again
                    log.warning("channel-state fold failed, retrying", error=repr(exc))
                    await retry.wait()
                else:
                    retry.reset()

    async def _fold(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Message]]
    ) -> None:
        assigned = consumer.assignment()
        writes: dict[tuple[int, str], Record] = {}
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in batches.items():
            if tp not in assigned or tp.partition not in self.known:
                continue  # revoked meanwhile: the next owner folds these
            known = self.known[tp.partition]
            for record in records:
                event = channel_event(record.value)
                if event is None:
                    self._decisions["not_a_channel"].inc()
                    continue
                channel_id = event["subject"]
                candidate = known_of(event["data"])
                decision = decide(known.get(channel_id), candidate)
                self._decisions[decision].inc()
                if decision == "write":
                    known[channel_id] = candidate
                    writes[(tp.partition, channel_id)] = state_record(event)
            if records:
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
        if writes:
            await asyncio.gather(
                *(
                    self.publisher.publish_durably(
                        self.config.topics.channel_state, record, partition=partition
                    )
                    for (partition, _), record in writes.items()
                )
            )
        if offsets:
            await self._commit(consumer, offsets)

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # refolded by the next owner: the fold skips what it knows
            log.warning("channel-state commit failed", error=repr(exc))

    async def assign(self, partitions: set[int]) -> None:
        async with self._lock:
            retry = Retry(KAFKA_BACKOFF)
            while True:
                try:
                    await self._load(partitions)
                    break
                except (KafkaError, OSError) as exc:
                    log.warning("cannot read the channel state, retrying", error=repr(exc))
                    await retry.wait()
            log.info("channel-state partitions assigned", partitions=sorted(partitions))
        if LEADER_PARTITION in partitions and not self.leader:
            self.leader = True
            if self.on_leader is not None:
                await self.on_leader(True)

    async def revoke(self, partitions: set[int]) -> None:
        if LEADER_PARTITION in partitions and self.leader:
            self.leader = False
            if self.on_leader is not None:
                await self.on_leader(False)
        async with self._lock:  # the batch in hand is written and committed first
            for partition in partitions:
                self.known.pop(partition, None)

    async def _load(self, partitions: set[int]) -> None:
        """Read the state partitions of ``partitions`` to their end."""
        topic = self.config.topics.channel_state
        reader = AIOKafkaConsumer(**consumer_settings(self.config.kafka, group=None))
        await start_client(reader)
        try:
            existing = {tp.partition for tp in await topic_partitions(reader, topic, wait_s=2.0)}
            missing = partitions - existing
            if missing:
                log.error(
                    "the channel-state topic lacks partitions of the events topic; give both "
                    "the same number of partitions",
                    state_topic=topic,
                    events_topic=self.config.topics.events,
                    missing=sorted(missing),
                )
            wanted = [TopicPartition(topic, p) for p in sorted(partitions & existing)]
            loaded: dict[int, dict[str, Known]] = {p: {} for p in partitions & existing}
            count = 0
            async for records in scan_partitions(reader, wanted):
                for record in records:
                    if record.value is None and record.key is not None:  # tombstone
                        loaded[record.partition].pop(record.key.decode(errors="replace"), None)
                    found = read_state(record.value)
                    if found is not None:
                        loaded[record.partition][found[0]] = found[1]
                        count += 1
            self.known.update(loaded)
            log.info("channel state loaded", records=count, partitions=sorted(loaded))
        finally:
            await stop_client(reader)
