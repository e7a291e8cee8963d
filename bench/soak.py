"""Soak test: one bridge (``--role all``) under steady webhook load and commands for minutes.

One invocation starts the embedded broker, the Bird simulator (install 0.2 s + activate
0.5 s, rate limits raised) in this process, and one ``bridge run --role all``. Then:

1. Unless ``--rate`` is given, it measures the maximum webhook rate with ``wrk`` (10 s at 64
   connections, bench.ingest's script) and takes half of it as the soak rate.
2. For ``--duration`` seconds, a load generator in its own process (``python -m bench.soak
   load``, aiohttp) sends signed webhooks at that constant rate: request ``i`` is due at
   ``start + i / rate`` whatever happened to the earlier ones, every request has a distinct
   ``messagebird-request-id``, latency is counted from the due time (so a stall shows up in
   the latency instead of lowering the rate), and every id answered 2xx is written to a file.
3. At the same time this process produces creates to the commands topic (``--commands-per-s``,
   distinct commandIds, connectors named after them) and, ``--delete-after`` seconds after a
   create's final result, a delete of its connector (key = the create's commandId).
4. Every ``--interval`` seconds it prints one line: webhook req/s and p99 over the interval,
   non-2xx answers and errors, commands done, the bridge's and the broker's RSS (``VmRSS``;
   the broker keeps every record in memory, so its RSS grows with the data by design).

Afterwards it reads the events topic back and checks that every request id answered 2xx is
there, that every command has exactly one distinct final result, that Bird holds no connector
that was created and then deleted, and that the bridge's RSS at the end is at most 1.2x its
RSS at the end of the warm-up (``--warmup``, 60 s into the soak).

    python -m bench.soak [--duration 600] [--rate REQ_PER_S] [--warmup 60] [--interval 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.commands import FINAL, RATE_LIMIT, create_command, simulator_settings
from bench.common import (
    HOST,
    PUBLIC_URL,
    SIGNING_KEY,
    Child,
    Message,
    banner,
    bridge_argv,
    bridge_env,
    percentile,
    read_event_ids,
    rss_mb,
    tail_topic,
    verdict,
)
from bench.ingest import TIMESTAMP, channel_event, lua_script, run_wrk, webhook_outcomes
from birdsim.server import SimulatorServer
from birdsim.settings import (
    FaultSettings,
    SimulatorSettings,
)
from bridge import logs
from bridge.ingest.verify import sign
from bridge.kafka.embedded import EmbeddedBroker, free_port

RSS_GROWTH_LIMIT = 1.20
REQUEST_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 4096  # the generator's bound on requests sent and not yet answered
DRAIN_S = 15.0  # how long the generator waits for answers after its last request


def _open_text(path: Path, mode: str) -> IO[str]:
    return path.open(mode)


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


# -- the load generator (its own process) --------------------------------------------------


@dataclass
class Window:
    """Answers that arrived in one interval."""

    ok: int = 0
    non2xx: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    send_lag: float = 0.0  # the most the generator sent a request after its due time


class LoadGenerator:
    """Constant-rate webhook sender: request ``i`` is due at ``t0 + i / rate``."""

    def __init__(self, args: argparse.Namespace, ids: IO[str]) -> None:
        self.url: str = args.url
        self.rate: float = args.rate
        self.duration: float = args.duration
        self.interval: float = args.interval
        self.connections: int = args.connections
        self.run_id: str = args.run
        self.ids = ids
        self.bodies = [
            (body, sign(SIGNING_KEY, TIMESTAMP, PUBLIC_URL, body))
            for body in (channel_event(n) for n in range(args.bodies))
        ]
        self.window = Window()
        self.totals = Window()
        self.sent = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.t0 = 0.0

    @staticmethod
    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()

    async def send(self, session: aiohttp.ClientSession, n: int, due: float) -> None:
        # Fixed width, like Bird's ids: ids that grow a digit at 10**6 move every new
        # dedupe-window string to another allocator size class, and the soak then measured
        # that move (+8 MB of half-empty arenas), not the bridge.
        request_id = f"{self.run_id}-{n:012d}"
        body, signature = self.bodies[n % len(self.bodies)]
        headers = {
            "Content-Type": "application/json",
            "messagebird-signature": signature,
            "messagebird-request-timestamp": TIMESTAMP,
            "messagebird-request-id": request_id,
        }
        status = 0
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        finally:
            self.slots.release()
        latency = asyncio.get_running_loop().time() - due
        for window in (self.window, self.totals):
            if 200 <= status < 300:
                window.ok += 1
            elif status:
                window.non2xx += 1
            else:
                window.errors += 1
        self.window.latencies.append(latency)
        if 200 <= status < 300:
            self.ids.write(request_id + "\n")

    async def pace(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        end = self.t0 + self.duration + REQUEST_TIMEOUT_S  # a late generator stops here
        total = round(self.duration * self.rate)
        while self.sent < total and loop.time() < end:
            due_now = min(total, int((loop.time() - self.t0) * self.rate) + 1)
            while self.sent < due_now:
                await self.slots.acquire()
                n = self.sent
                lag = loop.time() - (self.t0 + n / self.rate)
                self.window.send_lag = max(self.window.send_lag, lag)
                task = asyncio.create_task(self.send(session, n, self.t0 + n / self.rate))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                self.sent += 1
            await asyncio.sleep(max(0.0, self.t0 + self.sent / self.rate - loop.time()))

    async def report(self) -> None:
        """One line per interval, at ``t0 + k * interval`` (the last one at the duration)."""
        loop = asyncio.get_running_loop()
        since = self.t0
        cpu = time.process_time()
        k = 0
        while since < self.t0 + self.duration:
            k += 1
            boundary = self.t0 + min(k * self.interval, self.duration)
            await asyncio.sleep(max(0.0, boundary - loop.time()))
            now = loop.time()
            cpu_used = time.process_time() - cpu
            cpu += cpu_used
            window, self.window = self.window, Window()
            lat = window.latencies
            self.emit(
                {
                    "kind": "interval",
                    "elapsed": round(boundary - self.t0, 3),
                    "seconds": now - since,
                    "sent": self.sent,
                    "answered": len(lat),
                    "ok": window.ok,
                    "non2xx": window.non2xx,
                    "errors": window.errors,
                    "p50_ms": 1000 * percentile(lat, 50) if lat else None,
                    "p99_ms": 1000 * percentile(lat, 99) if lat else None,
                    "max_ms": 1000 * max(lat) if lat else None,
                    "cpu_s": cpu_used,
                    "send_lag_ms": 1000 * window.send_lag,
                }
            )
            since = now

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.t0 = asyncio.get_running_loop().time()
            reporter = asyncio.create_task(self.report())
            await self.pace(session)
            await reporter
            unanswered = 0
            if self.tasks:
                _, pending = await asyncio.wait(set(self.tasks), timeout=DRAIN_S)
                unanswered = len(pending)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        t = self.totals
        self.emit(
            {
                "kind": "done",
                "sent": self.sent,
                "ok": t.ok,
                "non2xx": t.non2xx,
                "errors": t.errors,
                "unanswered": unanswered,
            }
        )


def load_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per line")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bodies", type=int, default=500)
    parser.add_argument("--ids", type=Path, required=True, help="file for the 2xx request ids")
    parser.add_argument("--run", required=True, help="request id prefix")
    args = parser.parse_args(argv)
    with _open_text(args.ids, "w") as ids:
        asyncio.run(LoadGenerator(args, ids).run())
    return 0


# -- commands: creates, then a delete of each created connector ------------------------------


@dataclass
class CommandFlow:
    """Sends the commands and follows their results (read from the results topic)."""

    producer: AIOKafkaProducer
    topic: str
    prefix: str
    delete_after: float
    sent: dict[str, float] = field(default_factory=dict)  # commandId -> when sent
    creates: list[str] = field(default_factory=list)
    deletes: dict[str, str] = field(default_factory=dict)  # create id -> delete id
    targets: dict[str, str] = field(default_factory=dict)  # delete id -> connector id
    connectors: dict[str, str] = field(default_factory=dict)  # create id -> connector id
    finals: dict[str, list[bytes]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    already_deleted: int = 0
    creates_done: bool = False
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    failures: list[BaseException] = field(default_factory=list)

    async def send(self, command: dict[str, Any], key: str) -> None:
        self.sent[command["commandId"]] = time.monotonic()
        await self.producer.send_and_wait(self.topic, orjson.dumps(command), key=key.encode())
        self.progress.set()

    async def send_creates(self, count: int, per_s: float) -> None:
        started = time.monotonic()
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n / per_s - time.monotonic()))
            command_id = f"{self.prefix}-{n:05d}"
            self.creates.append(command_id)
            await self.send(create_command(command_id), command_id)
        self.creates_done = True

    async def delete_later(self, create_id: str, connector_id: str) -> None:
        await asyncio.sleep(self.delete_after)
        delete_id = f"{create_id}-delete"
        self.deletes[create_id] = delete_id
        self.targets[delete_id] = connector_id
        command = {"commandId": delete_id, "action": "delete", "connectorId": connector_id}
        await self.send(command, create_id)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.failures.append(error)
            self.progress.set()

    def add(self, record: Message) -> None:
        data = orjson.loads(record.value)["data"]
        command_id = data["commandId"]
        connector = data.get("connector")
        if data["action"] == "create" and isinstance(connector, dict) and connector.get("id"):
            self.connectors.setdefault(command_id, str(connector["id"]))
        if data["status"] not in FINAL:
            return
        first = command_id not in self.finals
        self.finals.setdefault(command_id, []).append(record.value)
        self.statuses[command_id] = data["status"]
        if first and data["action"] == "delete" and data.get("alreadyDeleted"):
            self.already_deleted += 1
        if first and data["action"] == "create" and command_id in self.connectors:
            task = asyncio.create_task(self.delete_later(command_id, self.connectors[command_id]))
            self.tasks.add(task)
            task.add_done_callback(self._task_done)
        self.progress.set()

    def done(self) -> int:
        return sum(c in self.finals for c in self.sent)

    def complete(self) -> bool:
        """Every create sent, every command final, and a delete sent for each connector."""
        return (
            self.creates_done
            and not self.tasks
            and all(c in self.finals for c in self.sent)
            and all(c in self.deletes for c in self.connectors if c in self.finals)
        )

    async def wait_complete(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while not self.complete():
                    if self.failures:
                        raise self.failures[0]
                    self.progress.clear()
                    await self.progress.wait()
        except TimeoutError:
            return False
        return True

    def result_problems(self) -> list[str]:
        """Commands without exactly one distinct final result (byte-identical repeats are fine)."""
        found = [(c, len(set(self.finals.get(c, [])))) for c in self.sent]
        return [f"{c}: {n} distinct final results" for c, n in found if n != 1]


@asynccontextmanager
async def command_flow(
    bootstrap: str, commands_topic: str, results_topic: str, args: argparse.Namespace, run: str
) -> AsyncIterator[CommandFlow]:
    """Reads the results topic and sends creates at ``--commands-per-s`` for the duration."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    flow = CommandFlow(producer, commands_topic, f"soak-{run}", args.delete_after)
    try:
        # The reader runs until the end, so it is not in flow.tasks.
        async with tail_topic(bootstrap, results_topic, flow.add) as reader:
            count = int(args.duration * args.commands_per_s)
            creates = asyncio.create_task(flow.send_creates(count, args.commands_per_s))
            flow.tasks.add(creates)
            for task in (reader, creates):
                task.add_done_callback(flow._task_done)
            try:
                yield flow
            finally:
                pending = [creates, *flow.tasks]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await producer.stop()


# -- the soak --------------------------------------------------------------------------------


@dataclass
class Sample:
    elapsed: float
    rate: float
    p99_ms: float | None
    non2xx: int
    errors: int
    commands_done: int
    commands_sent: int
    bridge_rss: float
    broker_rss: float
    bridge_cpu: float  # share of one core over the interval
    load_cpu: float
    send_lag_ms: float
    host_cpu: float  # busy share of one core, all cores summed (200 % = 2 cores busy)


HEADER = (
    f"{'elapsed':>8}  {'req/s':>7}  {'p99 ms':>7}  {'non-2xx':>7}  {'errors':>6}  "
    f"{'commands done/sent':>18}  {'bridge RSS MB':>13}  {'broker RSS MB':>13}  "
    f"{'bridge CPU %':>12}  {'load CPU %':>10}  {'load lag ms':>11}  {'host CPU %':>10}"
)


def sample_line(s: Sample) -> str:
    p99 = "-" if s.p99_ms is None else f"{s.p99_ms:.1f}"
    commands = f"{s.commands_done}/{s.commands_sent}"
    return (
        f"{s.elapsed:>6.0f} s  {s.rate:>7,.0f}  {p99:>7}  {s.non2xx:>7,}  {s.errors:>6,}  "
        f"{commands:>18}  {s.bridge_rss:>13.1f}  {s.broker_rss:>13.1f}  "
        f"{100 * s.bridge_cpu:>12.0f}  {100 * s.load_cpu:>10.0f}  {s.send_lag_ms:>11.1f}  "
        f"{100 * s.host_cpu:>10.0f}"
    )


@dataclass
class SoakRun:
    rate: float
    samples: list[Sample]
    totals: dict[str, int]
    ok_ids: set[str]
    commands_complete: bool
    flow: CommandFlow


def read_ids(path: Path) -> set[str]:
    with _open_text(path, "r") as ids:
        return {line.rstrip("\n") for line in ids if line.strip()}


async def soak(
    args: argparse.Namespace,
    rate: float,
    bridge: Child,
    broker_pid: int,
    env: dict[str, str],
    work: Path,
) -> SoakRun:
    run = uuid.uuid4().hex[:8]
    ids_path = work / "ok-ids.txt"
    argv = [sys.executable, "-m", "bench.soak", "load", "--url"]
    argv += [f"http://{HOST}:{bridge.port}/webhooks/bird", "--rate", f"{rate:g}"]
    argv += ["--duration", f"{args.duration:g}", "--interval", f"{args.interval:g}"]
    argv += ["--connections", str(args.connections), "--ids", str(ids_path), "--run", run]
    log = _open_text(work / "load.log", "w")
    try:
        generator = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=log
        )
    finally:
        log.close()  # the child keeps its own descriptor
    assert generator.stdout is not None
    samples: list[Sample] = []
    totals: dict[str, int] = {}
    bootstrap = env["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"]
    bridge_cpu = bridge.cpu_seconds()
    host_busy, host_total = host_cpu()
    try:
        async with command_flow(
            bootstrap, env["BRIDGE_TOPIC_COMMANDS"], env["BRIDGE_TOPIC_RESULTS"], args, run
        ) as flow:
            async with asyncio.timeout(args.duration + DRAIN_S + 60):
                while line := await generator.stdout.readline():
                    if flow.failures:
                        raise flow.failures[0]
                    report = orjson.loads(line)
                    if report["kind"] == "done":
                        totals = report
                        continue
                    bridge_used = bridge.cpu_seconds() - bridge_cpu
                    bridge_cpu += bridge_used
                    busy, total = host_cpu()
                    host_share = (busy - host_busy) / (total - host_total) * (os.cpu_count() or 1)
                    host_busy, host_total = busy, total
                    sample = Sample(
                        elapsed=report["elapsed"],
                        rate=report["answered"] / report["seconds"],
                        p99_ms=report["p99_ms"],
                        non2xx=report["non2xx"],
                        errors=report["errors"],
                        commands_done=flow.done(),
                        commands_sent=len(flow.sent),
                        bridge_rss=rss_mb(bridge.pid),
                        broker_rss=rss_mb(broker_pid),
                        bridge_cpu=bridge_used / report["seconds"],
                        load_cpu=report["cpu_s"] / report["seconds"],
                        send_lag_ms=report["send_lag_ms"],
                        host_cpu=host_share,
                    )
                    samples.append(sample)
                    print(sample_line(sample), flush=True)
                await generator.wait()
            if generator.returncode != 0 or not totals:
                raise RuntimeError(f"the load generator failed; see {work / 'load.log'}")
            complete = await flow.wait_complete(args.commands_timeout)
    finally:
        if generator.returncode is None:
            generator.kill()
            await generator.wait()
    return SoakRun(rate, samples, totals, read_ids(ids_path), complete, flow)


async def probe_rate(port: int, work: Path, args: argparse.Namespace) -> float:
    script = work / "webhooks.lua"
    with _open_text(script, "w") as out:
        out.write(lua_script(500))
    wrk_args = argparse.Namespace(threads=2, connections=64)
    url = f"http://{HOST}:{port}/webhooks/bird"
    result = await run_wrk(script, url, wrk_args, args.probe_seconds)
    print(
        f"max rate: wrk {args.probe_seconds:g} s at 64 connections (2 threads): "
        f"{result.rps:,.0f} req/s, p99 {result.p99_us / 1000:.1f} ms, "
        f"non-2xx {result.non2xx}, errors {result.socket_errors + result.timeouts}",
        flush=True,
    )
    return result.rps


def rss_growth(samples: list[Sample], warmup: float) -> tuple[Sample, Sample, float]:
    """(sample at the end of the warm-up, last sample, least-squares slope in MB/min after it)."""
    base = next(s for s in samples if s.elapsed >= warmup - 1e-6)
    after = [s for s in samples if s.elapsed >= base.elapsed]
    slope = 0.0
    if len(after) >= 2:
        mx = sum(s.elapsed for s in after) / len(after)
        my = sum(s.bridge_rss for s in after) / len(after)
        sxx = sum((s.elapsed - mx) ** 2 for s in after)
        sxy = sum((s.elapsed - mx) * (s.bridge_rss - my) for s in after)
        slope = 60 * sxy / sxx if sxx else 0.0
    return base, samples[-1], slope


async def main(args: argparse.Namespace) -> int:
    logs.configure(fmt="console", level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    print(banner("Soak test", "bench.soak"), flush=True)
    settings = SimulatorSettings(
        install_delay_s=0.2,
        activate_delay_s=0.5,
        faults=FaultSettings(rate_limit_get_per_s=RATE_LIMIT, rate_limit_post_per_s=RATE_LIMIT),
    )
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        assert broker.process is not None
        broker_pid = broker.process.pid
        async with SimulatorServer(settings) as sim:
            env = bridge_env(
                broker.bootstrap,
                port,
                suffix,
                **simulator_settings(sim.url),
                **dict(args.bridge_setting),
            )
            async with Child("bridge", bridge_argv("all"), port=port, env=env, log_dir=work) as b:
                print(
                    f"bridge: bridge run --role all (pid {b.pid}), embedded broker "
                    f"(pid {broker_pid}), Bird simulator in this process (install "
                    f"{settings.install_delay_s:g} s + activate {settings.activate_delay_s:g} s, "
                    f"rate limits {RATE_LIMIT}/s)",
                    flush=True,
                )
                rate = args.rate or await probe_rate(port, work, args) / 2
                print(
                    f"soak: {args.duration:g} s at {rate:,.0f} webhooks/s (constant rate, "
                    f"{args.connections} connections at most, latency from each request's "
                    f"due time), {args.commands_per_s:g} creates/s, each connector deleted "
                    f"{args.delete_after:g} s after its create's final result; warm-up "
                    f"{args.warmup:g} s\n\n{HEADER}",
                    flush=True,
                )
                result = await soak(args, rate, b, broker_pid, env, work)
                outcomes = await webhook_outcomes(port)
                bridge_rc = await b.stop()
            left = {c.id: c.name for c in sim.simulator.state.connectors.values()}
        records, found = await read_event_ids(
            broker.bootstrap, env["BRIDGE_TOPIC_EVENTS"], result.ok_ids
        )
    return report(args, result, outcomes, bridge_rc, left, records, found, env, work)


def report(
    args: argparse.Namespace,
    result: SoakRun,
    outcomes: dict[str, int],
    bridge_rc: int | None,
    left: dict[str, str],
    records: int,
    found: set[str],
    env: dict[str, str],
    work: Path,
) -> int:
    t = result.totals
    flow = result.flow
    probe = "" if args.rate else ", the max-rate run's included"
    print(
        f"\nload generator: {t['sent']:,} sent at {result.rate:,.0f}/s, {t['ok']:,} 2xx, "
        f"{t['non2xx']:,} non-2xx, {t['errors']:,} errors, {t['unanswered']:,} unanswered; "
        f"bridge webhook outcomes (its metric{probe}): {outcomes}; "
        f"bridge exit code {bridge_rc}"
    )
    missing = result.ok_ids - found
    present = len(result.ok_ids) - len(missing)
    creates = flow.creates
    deletes = list(flow.deletes.values())
    succeeded = sum(flow.statuses.get(c) == "succeeded" for c in creates)
    deleted_ok = sum(flow.statuses.get(d) == "succeeded" for d in deletes)
    print(
        f"commands: {len(creates):,} creates ({succeeded:,} succeeded), {len(deletes):,} "
        f"deletes ({deleted_ok:,} succeeded, {flow.already_deleted} already deleted); "
        f"all final within {args.commands_timeout:g} s of the end: {result.commands_complete}"
    )
    base, last, slope = rss_growth(result.samples, args.warmup)
    growth = last.bridge_rss / base.bridge_rss
    deleted_names = {c for c in flow.deletes if flow.statuses.get(flow.deletes[c]) == "succeeded"}
    still_there = [
        f"{d}: connector {flow.targets[d]} is at Bird" for d in deletes if flow.targets[d] in left
    ]
    still_there += [
        f"{n}: a connector of this name is at Bird" for n in left.values() if n in deleted_names
    ]
    problems = flow.result_problems()
    checks: list[tuple[str, bool, list[str]]] = [
        (
            f"every 2xx request id is on {env['BRIDGE_TOPIC_EVENTS']}: {present:,} of "
            f"{len(result.ok_ids):,}, {len(missing):,} missing (the topic holds {records:,} "
            f"records with {len(found):,} distinct request ids{probe})",
            not missing and bool(result.ok_ids),
            sorted(missing)[:5],
        ),
        (
            f"bridge RSS growth after warm-up <= {RSS_GROWTH_LIMIT:.2f}x: {base.bridge_rss:.1f} MB "
            f"at {base.elapsed:.0f} s -> {last.bridge_rss:.1f} MB at {last.elapsed:.0f} s "
            f"({growth:.3f}x, trend {slope:+.2f} MB/min)",
            growth <= RSS_GROWTH_LIMIT,
            [],
        ),
        (
            f"every command has exactly one distinct final result ({len(flow.sent):,} commands)",
            result.commands_complete and not problems,
            problems[:5],
        ),
        (
            f"no connector left at Bird that was created and then deleted ({len(deletes):,} "
            f"deletes; {len(left)} connectors left at Bird in all)",
            not still_there and len(deletes) == len(flow.connectors),
            still_there[:5],
        ),
    ]
    print(
        f"broker RSS: {result.samples[0].broker_rss:.1f} MB at {result.samples[0].elapsed:.0f} s "
        f"-> {last.broker_rss:.1f} MB at {last.elapsed:.0f} s (memory store: grows with the "
        f"data by design)\n"
    )
    for text, ok, details in checks:
        print(f"{verdict(ok)}  {text}")
        for detail in details:
            print(f"        {detail}")
    ok = all(ok for _, ok, _ in checks)
    print(f"\n{verdict(ok)}\nlogs: {work}")
    return 0 if ok else 1


def bridge_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("BRIDGE_"):
        raise argparse.ArgumentTypeError(f"expected BRIDGE_NAME=VALUE, got {text!r}")
    return name, value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="soak seconds")
    parser.add_argument(
        "--rate", type=float, help="webhooks per second (skips the max-rate measurement)"
    )
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS base")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per line")
    parser.add_argument("--probe-seconds", type=float, default=10.0, help="max-rate wrk run")
    parser.add_argument("--connections", type=int, default=64, help="load generator's limit")
    parser.add_argument("--commands-per-s", type=float, default=2.0, help="creates per second")
    parser.add_argument("--delete-after", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--commands-timeout",
        type=float,
        default=120.0,
        help="seconds after the load for every command to be final",
    )
    parser.add_argument(
        "--bridge-setting",
        action="append",
        default=[],
        type=bridge_setting,
        metavar="BRIDGE_NAME=VALUE",
        help="an extra setting for the bridge (repeatable)",
    )
    args = parser.parse_args()
    if args.rate is None and shutil.which("wrk") is None:
        parser.error("wrk not found (apt-get install -y wrk), or give --rate")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    if not 0 < args.interval <= args.warmup < args.duration:
        parser.error("need 0 < --interval <= --warmup < --duration")
    return args


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        raise SystemExit(load_main(sys.argv[2:]))
    raise SystemExit(asyncio.run(main(parse_args())))
