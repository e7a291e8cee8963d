"""``bridge dlq list`` and ``bridge dlq redrive`` (contract section 11). I/O around ``select.py``.

Both stream the dead-letter topic from its beginning to its end as of the start (bounded
batches, ``bridge.kafka.scan``): memory does not grow with the topic. Redrive sends in
bounded batches, waits for each batch's acknowledgements (acks=all) before the next, and
flushes the producer before it prints its summary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata
from tqdm import tqdm

from bridge.config import Config
from bridge.dlq.select import DeadLetter, Filters, describe, redrive_headers, verdict
from bridge.kafka.clients import producer_settings
from bridge.kafka.scan import scan_topic
from bridge.ratelimit import TokenBucket

SEND_BATCH = 500


async def dead_letters(
    config: Config, filters: Filters, limit: int | None
) -> AsyncIterator[DeadLetter]:
    """The dead letters matching ``filters``, oldest first per partition, at most ``limit``."""
    topic = config.topics.dead_letter
    count = 0
    async for records in scan_topic(config.kafka, topic):
        for record in records:
            letter = DeadLetter(
                topic=topic,
                partition=record.partition,
                offset=record.offset,
                timestamp=record.timestamp,
                key=record.key,
                value=record.value,
                headers=tuple((k, bytes(v)) for k, v in record.headers),
            )
            if not filters.match(letter):
                continue
            yield letter
            count += 1
            if limit is not None and count >= limit:
                return


def _line(letter: DeadLetter) -> str:
    when = datetime.fromtimestamp(letter.timestamp / 1000, UTC).isoformat(timespec="seconds")
    info = describe(letter)
    key = info["key"] if info["key"] is not None else "-"
    source = f"{info['sourceTopic']}/{info['sourcePartition']}/{info['sourceOffset']}"
    return (
        f"{letter.partition}/{letter.offset} {when} key={key} source={source} "
        f"redrives={letter.redrive_count} reason={letter.reason}"
    )


async def list_command(
    config: Config, filters: Filters, limit: int | None, *, as_json: bool, out: TextIO
) -> int:
    shown = 0
    async for letter in dead_letters(config, filters, limit):
        if as_json:
            out.write(orjson.dumps(describe(letter)).decode() + "\n")
        else:
            out.write(_line(letter) + "\n")
        shown += 1
    out.flush()
    return shown


@dataclass
class RedriveSummary:
    redriven: int = 0
    skipped: int = 0

    def line(self) -> str:
        return f"redriven={self.redriven} skipped={self.skipped}"


def progress_bar(stream: TextIO, *, dry_run: bool) -> Any:
    """A progress bar on ``stream``, off unless it is a terminal."""
    return tqdm(
        desc="checking" if dry_run else "redriving",
        unit=" letters",
        file=stream,
        disable=not stream.isatty(),
        mininterval=0.5,
    )


async def redrive_command(
    config: Config,
    filters: Filters,
    limit: int | None,
    *,
    dry_run: bool,
    rate: float | None,
    max_redrives: int,
    as_json: bool,
    out: TextIO,
    err: TextIO = sys.stderr,
) -> RedriveSummary:
    summary = RedriveSummary()
    producer: AIOKafkaProducer | None = None
    if not dry_run:
        # Kafka's default partitioner without the bridge's key cache: dead letters' keys
        # rarely repeat, and a cache of them would grow with the run.
        producer = AIOKafkaProducer(
            **producer_settings(config.kafka, partitioner=DefaultPartitioner())
        )
        await producer.start()
    bucket = TokenBucket(rate=rate, burst=max(1.0, min(rate, 100.0))) if rate else None
    pending: list[asyncio.Future[RecordMetadata]] = []
    bar = progress_bar(err, dry_run=dry_run)
    try:
        async for letter in dead_letters(config, filters, limit):
            action, why = verdict(letter, max_redrives=max_redrives)
            if action == "skip":
                summary.skipped += 1
                _report(out, as_json, letter, "skipped", why)
            else:
                summary.redriven += 1
                if producer is None:
                    _report(out, as_json, letter, "would_redrive", "")
                else:
                    if bucket is not None:
                        wait = bucket.reserve(time.monotonic())
                        if wait > 0:
                            await asyncio.sleep(wait)
                    assert letter.source_topic is not None
                    pending.append(
                        await producer.send(
                            letter.source_topic,
                            letter.value,
                            key=letter.key,
                            headers=list(redrive_headers(letter)),
                        )
                    )
                    if as_json:
                        _report(out, as_json, letter, "redriven", "")
                    if len(pending) >= SEND_BATCH:
                        await asyncio.gather(*pending)
                        pending.clear()
            bar.update(1)
        if pending:
            await asyncio.gather(*pending)
            pending.clear()
        if producer is not None:
            await producer.flush()
    finally:
        bar.close()
        if producer is not None:
            await producer.stop()
    out.write(summary.line() + "\n")
    out.flush()
    return summary


def _report(out: TextIO, as_json: bool, letter: DeadLetter, action: str, why: str) -> None:
    if as_json:
        item = {"action": action, **({"why": why} if why else {}), **describe(letter)}
        out.write(orjson.dumps(item).decode() + "\n")
    elif action == "skipped":
        out.write(f"skipped {letter.where}: {why}\n")
    elif action == "would_redrive":
        out.write(f"would redrive {letter.where} -> {letter.source_topic}\n")
