"""Dead-letter redrive at scale: rate and memory of ``bridge dlq redrive``.

Starts the embedded broker, writes ``--count`` dead letters (300-byte command values,
the bridge's dlq-* headers and a traceparent) to a fresh dead-letter topic, then runs
``bridge dlq redrive`` as a child process twice: with ``--limit`` a tenth of the count,
and on all of them. For each run it reports the wall time, the rate, and the child's
peak RSS (``ru_maxrss``). Streaming means the peak RSS does not grow with the count:
the full run must stay within 1.25x of the tenth. Finally it reads the source topic
back and checks that it holds every redriven record once, with its redrive headers.

    python -m bench.redrive [--count 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import banner, bridge_env, table, topic_partitions, verdict
from bridge import logs
from bridge.config import load
from bridge.kafka.clients import all_topics, ensure_topics
from bridge.kafka.embedded import EmbeddedBroker, free_port


@dataclass
class Run:
    label: str
    records: int
    seconds: float
    peak_rss_mb: float
    summary: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def dead_letter(index: int, source: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    command_id = f"cmd-{index:08d}"
    value = orjson.dumps(
        {
            "commandId": command_id,
            "action": "create",
            "connector": {
                "connectorTemplateRef": "sms-messagebird:1",
                "name": f"Redrive bench {index}",
                "arguments": {
                    "phoneNumberId": str(uuid.UUID(int=index)),
                    "channelMessageType": "transactional",
                },
            },
        }
    )
    headers = [
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("dlq-reason", b"bird_unavailable: Bird answered 503"),
        ("dlq-source-topic", source.encode()),
        ("dlq-source-partition", str(index % 6).encode()),
        ("dlq-source-offset", str(index).encode()),
        ("correlation-id", command_id.encode()),
    ]
    return command_id.encode(), value, headers


async def fill(bootstrap: str, topic: str, source: str, count: int) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262144
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for index in range(count):
            key, value, headers = dead_letter(index, source)
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def redrive(env: dict[str, str], label: str, records: int, *extra: str) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "dlq",
        "redrive",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"redrive failed ({process.returncode}): {err.decode()[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("cannot tell this run's peak RSS from an earlier child's")
    summary = out.decode().splitlines()[-1]
    return Run(label, records, seconds, peak * 1024 / 1e6, summary)


async def count_redriven(bootstrap: str, topic: str, expect: int) -> tuple[int, int, int]:
    """(records, distinct keys, records with dlq-redrive-count 1 and a dlq-redriven-from)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records = 0
    keys: set[bytes] = set()
    marked = 0
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 120
        while records < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            for batch in batches.values():
                for record in batch:
                    records += 1
                    if record.key is not None:
                        keys.add(record.key)
                    headers = dict(record.headers)
                    if headers.get("dlq-redrive-count") == b"1" and headers.get(
                        "dlq-redriven-from"
                    ):
                        marked += 1
    finally:
        await consumer.stop()
    return records, len(keys), marked


async def main(args: argparse.Namespace) -> int:
    logs.configure(fmt="console", level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-redrive-"))
    count = args.count
    tenth = max(count // 10, 1)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        env = bridge_env(broker.bootstrap, free_port(), uuid.uuid4().hex[:8])
        env["BRIDGE_LOG_LEVEL"] = "warning"
        config = load(env)
        await ensure_topics(config.kafka, all_topics(config.topics))
        fill_s = await fill(
            broker.bootstrap, config.topics.dead_letter, config.topics.commands, count
        )
        small = await redrive(env, f"--limit {tenth}", tenth, "--limit", str(tenth))
        full = await redrive(env, "all", count)
        records, keys, marked = await count_redriven(
            broker.bootstrap, config.topics.commands, tenth + count
        )
    print(banner("Dead-letter redrive benchmark", "bench.redrive"))
    print(
        f"{count:,} dead letters of {len(dead_letter(0, 'x')[1])} bytes written in "
        f"{fill_s:.1f} s; `bridge dlq redrive` run as a child process (cold start included)\n"
    )
    rows = [
        [
            run.label,
            f"{run.records:,}",
            f"{run.seconds:.1f}",
            f"{run.rate:,.0f}",
            f"{run.peak_rss_mb:.1f}",
            run.summary,
        ]
        for run in (small, full)
    ]
    print(table(["run", "records", "seconds", "records/s", "peak RSS MB", "summary"], rows))
    print()
    growth = full.peak_rss_mb / small.peak_rss_mb
    checks = [
        (
            full.summary == f"redriven={count} skipped=0"
            and small.summary == f"redriven={tenth} skipped=0",
            "every selected dead letter redriven",
        ),
        (
            growth <= 1.25,
            f"peak RSS at {count:,} within 1.25x of {tenth:,} ({growth:.2f}x)",
        ),
        (
            records == tenth + count and keys == count and marked == records,
            f"source topic holds {records:,} records, {keys:,} distinct keys, "
            f"{marked:,} with dlq-redrive-count 1 and dlq-redriven-from",
        ),
    ]
    for ok, text in checks:
        print(f"{verdict(ok)}  {text}")
    return 0 if all(ok for ok, _ in checks) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=100_000, help="dead letters to write (default %(default)s)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main(parse_args())))
