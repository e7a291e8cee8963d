"""Shared by the benchmarks: bridge settings, child server processes, reading a topic, tables."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeAlias

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from bridge.kafka import clients
from bridge.kafka.embedded import EMBEDDED_SETTINGS, EmbeddedBroker
from tests.kafka_cluster import KafkaCluster

SIGNING_KEY = "bench-signing-key"
PUBLIC_URL = "https://bridge.example.org/webhooks/bird"
HOST = "127.0.0.1"

Message: TypeAlias = ConsumerRecord[bytes, bytes]


# The embedded broker's own settings (no idempotent producer, one node, slow joins).
EMBEDDED_BENCH_SETTINGS: dict[str, str] = {
    **EMBEDDED_SETTINGS,
    "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "2000",
    "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "BRIDGE_KAFKA_REQUEST_TIMEOUT_MS": "5000",
}
# One Apache Kafka node: the production defaults, one replica.
KAFKA_BENCH_SETTINGS: dict[str, str] = {"BRIDGE_KAFKA_REPLICATION_FACTOR": "1"}


def bridge_env(
    bootstrap: str,
    http_port: int,
    suffix: str,
    broker_settings: Mapping[str, str] = EMBEDDED_BENCH_SETTINGS,
    /,
    **overrides: str,
) -> dict[str, str]:
    """The environment of a ``bridge run`` child on the broker (the embedded one unless
    ``broker_settings`` say otherwise); topics and the consumer group carry ``suffix`` so
    every run starts empty."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        {
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            **broker_settings,
            "BRIDGE_KAFKA_CONSUMER_GROUP": f"bridge-{suffix}",
            "BRIDGE_TOPIC_EVENTS": f"events-{suffix}",
            "BRIDGE_TOPIC_COMMANDS": f"commands-{suffix}",
            "BRIDGE_TOPIC_RESULTS": f"results-{suffix}",
            "BRIDGE_TOPIC_DEAD_LETTER": f"dlq-{suffix}",
            "BRIDGE_TOPIC_LEDGER": f"ledger-{suffix}",
            "BRIDGE_TOPIC_CHANNEL_STATE": f"state-{suffix}",
            "BRIDGE_TOPIC_LEDGER_SNAPSHOTS": f"snapshots-{suffix}",
            "BRIDGE_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
            "BRIDGE_HTTP_HOST": HOST,
            "BRIDGE_HTTP_PORT": str(http_port),
            "BRIDGE_LOG_LEVEL": "warning",
            "BRIDGE_SHUTDOWN_TIMEOUT_S": "10",
        }
    )
    env.update(overrides)
    return env


def bridge_argv(role: str) -> list[str]:
    return [sys.executable, "-m", "bridge", "run", "--role", role]


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


class Child:
    """A server in its own process: started, awaited until ``GET ready_path`` answers 200,
    measured (peak RSS) and stopped with SIGTERM (SIGKILL after ``stop_timeout``)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.ready_url = f"http://{HOST}:{port}{ready_path}"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 30.0) -> None:
        log = _open_log(self.log_path)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            log.close()  # the child keeps its own descriptor
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.ready_url, timeout=aiohttp.ClientTimeout(1)) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout:g}s; see {self.log_path}")

    def peak_rss_mb(self) -> float:
        """``VmHWM`` (peak resident set) of the process, in MB (10^6 bytes); summed over
        its child processes too (a server with several workers)."""
        total = 0
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                total += next(
                    int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmHWM:"
                )
        return total * 1024 / 1e6

    def cpu_seconds(self) -> float:
        """User + system CPU time the process (all its threads) and its running child
        processes used so far."""
        ticks = 0
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    async def stop(self, stop_timeout: float = 15.0) -> int | None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), stop_timeout)
        except TimeoutError:
            process.kill()
            return await process.wait()

    async def __aenter__(self) -> Child:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def rss_mb(pid: int) -> float:
    """``VmRSS`` (current resident set) of process ``pid``, in MB (10^6 bytes)."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
    return kib * 1024 / 1e6


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = await clients.topic_partitions(consumer, topic, wait_s=10.0)
    if found:
        return found
    raise RuntimeError(f"topic {topic} does not exist")


@asynccontextmanager
async def tail_topic(
    bootstrap: str, topic: str, on_record: Callable[[Message], None]
) -> AsyncIterator[asyncio.Task[None]]:
    """Hands every record of ``topic``, from the beginning, to ``on_record`` in a task (the
    value of the block) until the block ends."""
    # A short fetch wait: a broker that holds a fetch for its whole wait (500 ms by
    # default) would otherwise add up to that to every arrival time measured here.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()

    async def read() -> None:
        while True:
            batches: dict[Any, list[Message]] = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    on_record(record)

    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        task = asyncio.create_task(read())
        try:
            yield task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await consumer.stop()


async def read_event_ids(
    bootstrap: str, topic: str, expected: set[str], *, idle_s: float = 3.0, timeout: float = 300
) -> tuple[int, set[str]]:
    """Reads ``topic`` from the beginning, keeping only each record's ``correlation-id``:
    until every partition is at the high watermark of its last fetch, or every expected id was
    seen and ``idle_s`` passed without more, or ``timeout``. Returns (records, distinct ids)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    records = 0
    found: set[str] = set()
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batches: dict[Any, list[Message]] = await consumer.getmany(
                timeout_ms=500, max_records=20_000
            )
            for batch in batches.values():
                records += len(batch)
                for record in batch:
                    value = dict(record.headers).get("correlation-id")
                    if value is not None:
                        found.add(value.decode())
            if batches:
                last_new = time.monotonic()
                continue
            caught_up = True
            for tp in partitions:
                highwater = consumer.highwater(tp)
                caught_up &= highwater is not None and await consumer.position(tp) >= highwater
            idle = time.monotonic() - last_new >= idle_s
            if caught_up or (idle and expected <= found):
                break
    finally:
        await consumer.stop()
    return records, found


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``nan`` for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def banner(title: str, module: str) -> str:
    """Title, date, machine and the exact command that reproduces the run."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    command = shlex.join(["python", "-m", module, *sys.argv[1:]])
    return f"{title} -- {now} -- {machine}\ncommand: {command}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def add_bridge_env_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--bridge-env NAME=VALUE`` (repeatable): settings for the bridge over the
    benchmark's own, as ``(name, value)`` pairs in ``args.bridge_env``."""
    parser.add_argument(
        "--bridge-env",
        metavar="NAME=VALUE",
        type=lambda item: tuple(item.split("=", 1)),
        action="append",
        default=[],
        help=help_text,
    )


def bench_broker(kind: str, work: Path) -> tuple[EmbeddedBroker | KafkaCluster, dict[str, str]]:
    """The broker ``--broker`` names (``kafka``: one Apache Kafka node; else the embedded
    one), not started yet, and the bridge settings that go with it."""
    if kind == "kafka":
        return KafkaCluster(work / "kafka", 1), KAFKA_BENCH_SETTINGS
    return EmbeddedBroker(log_path=work / "broker.log"), EMBEDDED_BENCH_SETTINGS
