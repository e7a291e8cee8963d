"""Fault tests against the real broker, the Bird simulator and real processes, and the few
helpers they share: a bridge process with a known port, result and request-log checks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bridge.config import Config
from bridge.kafka.embedded import free_port
from tests.command_helpers import FINAL, CommandClient, simulator_json

BRIDGE = str(Path(sys.executable).parent / "bridge")
CONNECTORS_GLOB = "/workspaces/*/connectors"


async def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll ``predicate`` every 50 ms; fail the test after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:g}s: {what or predicate}") from None


class BridgeProcess:
    """``bridge run --role <role>`` as a child process on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log: Path, role: str = "commands") -> None:
        self.env = dict(env)
        self.log = log
        self.role = role
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BridgeProcess:
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [BRIDGE, "run", "--role", self.role],
                env={**os.environ, **self.env, "BRIDGE_HTTP_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()
        return self

    async def wait_ready(self, timeout: float = 30) -> float:
        """Wait for ``/readyz`` 200 (consumer joined its group); return the seconds it took."""
        assert self.process is not None
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"bridge exited with {self.process.returncode}")
                try:
                    async with session.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return time.monotonic() - self.started_at
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    async def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait for the exit code (the worker drains first)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, timeout)

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def final_records(client: CommandClient, command_id: str) -> list[bytes]:
    """Every final (succeeded / failed) result record of one command, as raw bytes."""
    return [
        raw
        for raw, event in zip(
            client.results.raw.get(command_id, []),
            client.results.by_command.get(command_id, []),
            strict=True,
        )
        if event["data"]["status"] in FINAL
    ]


def all_final(client: CommandClient, ids: list[str]) -> Callable[[], bool]:
    return lambda: all(client.results.final(i) is not None for i in ids)


def one_final_each(client: CommandClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Assert each command has a final result and every repeat is byte-identical; return the
    final result (its ``data``) per commandId."""
    outcomes: dict[str, dict[str, Any]] = {}
    for command_id in ids:
        finals = final_records(client, command_id)
        assert finals, f"{command_id}: no final result"
        assert len(set(finals)) == 1, f"{command_id}: {len(set(finals))} different final results"
        final = client.results.final(command_id)
        assert final is not None
        outcomes[command_id] = final["data"]
    return outcomes


def repeats(client: CommandClient, ids: list[str]) -> int:
    """How many final results were published more than once in total (redelivery replays)."""
    return sum(max(0, len(final_records(client, i)) - 1) for i in ids)


async def bird_requests(url: str, **filters: str) -> list[dict[str, Any]]:
    """The simulator's request journal (``/_simulator/requests``), filtered."""
    query = f"?{urlencode(filters)}" if filters else ""
    answer = await simulator_json(url, "GET", f"/_simulator/requests{query}")
    return list(answer["results"])


async def processed_creates(url: str) -> int:
    """Connector POSTs that created a connector at Bird: answered 2xx, or processed and then
    cut off (``drop``). Processed requests that failed (4xx/5xx) created nothing."""
    posts = await bird_requests(url, method="POST", path=CONNECTORS_GLOB)
    return sum(
        1 for r in posts if r["processed"] and (r["status"] is None or 200 <= r["status"] < 300)
    )


def max_per_window(timestamps: list[float], window_s: float = 1.0) -> int:
    """The most events in any half-open window ``[t, t + window_s)``."""
    times = sorted(timestamps)
    best = 0
    start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def committed_commands(config: Config) -> int:
    """How many command records the worker group has committed (the sum of its committed
    offsets over the commands topic: every record there is one of the test's)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers)
    await admin.start()
    try:
        partitions = [
            TopicPartition(config.topics.commands, p) for p in range(config.kafka.topic_partitions)
        ]
        offsets = await admin.list_consumer_group_offsets(
            config.kafka.consumer_group, partitions=partitions
        )
    finally:
        await admin.close()
    return sum(max(0, meta.offset) for meta in offsets.values())


async def wait_all_committed(config: Config, count: int, timeout: float = 30) -> None:
    """Wait until the worker group committed all ``count`` command records: from then on
    nothing is redelivered, so the results seen are all there will be."""
    async with asyncio.timeout(timeout):
        while await committed_commands(config) < count:
            await asyncio.sleep(0.2)
