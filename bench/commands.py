"""Commands benchmark: completed connector creates per second at several in-flight limits.

One invocation starts the embedded broker and the Bird simulator (install 0.5 s + activate
1.5 s, so a channel is active 2 s after its create; ``--latency`` added to every Bird
request; rate limits raised so they do not cap the run). For each level it runs
``bridge run --role commands`` with ``BRIDGE_COMMANDS_MAX_IN_FLIGHT`` set, on fresh topics
and a fresh consumer group, sends one warm-up create, then a batch of creates (key =
commandId) and times them until every final result is on the results topic. It then checks
that Bird holds exactly one connector per create and that each command has exactly one
distinct final result.

    python -m bench.commands [--broker embedded|kafka] [--levels 1:10,10:100,100:400]
        [--follow-interval 0.25] [--bridge-env NAME=VALUE ...] [--steps]

``--levels ''`` skips the levels; ``--overhead-commands 0`` skips the overhead part.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.common import (
    Child,
    Message,
    add_bridge_env_option,
    banner,
    bench_broker,
    bridge_argv,
    bridge_env,
    percentile,
    table,
    tail_topic,
    verdict,
)
from bench.otlp_sink import KeptSpan, OtlpSink
from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    FaultSettings,
    SimulatorSettings,
)
from bridge import config as config_module
from bridge import logs
from bridge.kafka.clients import ensure_topics
from bridge.kafka.embedded import free_port
from tests.kafka_cluster import KAFKA_VERSION

BROKERS = {
    "embedded": "the embedded broker (Tansu, memory only)",
    "kafka": f"Apache Kafka {KAFKA_VERSION} (one KRaft node, tests/kafka_cluster.py)",
}

FINAL = ("succeeded", "failed")
RATE_LIMIT = 100_000  # per second, at the simulator and in the bridge: never the bottleneck
TARGET_RATIO = 50


def simulator_settings(url: str) -> dict[str, str]:
    """The bridge's Bird settings for the simulator at ``url``, its rate limits raised."""
    return {
        "BRIDGE_BIRD_API_URL": url,
        "BRIDGE_BIRD_ACCESS_KEY": DEV_ACCESS_KEY,
        "BRIDGE_BIRD_WORKSPACE_ID": DEFAULT_WORKSPACE_ID,
        "BRIDGE_BIRD_RATE_GET_PER_S": str(RATE_LIMIT),
        "BRIDGE_BIRD_RATE_POST_PER_S": str(RATE_LIMIT),
    }


def create_command(command_id: str) -> dict[str, Any]:
    """A create whose connector is named after the command, to match them up afterwards."""
    return {
        "commandId": command_id,
        "action": "create",
        "connector": {
            "connectorTemplateRef": "sms-messagebird:1",
            "name": command_id,
            "arguments": {
                "phoneNumberId": str(uuid.uuid4()),
                "channelMessageType": "transactional",
            },
        },
    }


async def send_creates(
    producer: AIOKafkaProducer,
    topic: str,
    command_ids: list[str],
    traces: dict[str, str] | None = None,
    sent: dict[str, float] | None = None,
) -> None:
    """Produce one create per id (key = commandId) and wait until Kafka has them all.
    ``traces``: a trace id per command, sent as its ``traceparent``; ``sent``: filled with
    each command's send time (epoch seconds)."""
    sends = []
    for c in command_ids:
        trace = (traces or {}).get(c)
        headers = [("traceparent", f"00-{trace}-{trace[:16]}-01".encode())] if trace else None
        if sent is not None:
            sent[c] = time.time()
        sends.append(
            await producer.send(
                topic, orjson.dumps(create_command(c)), key=c.encode(), headers=headers
            )
        )
    await asyncio.gather(*sends)


@dataclass
class Results:
    """Final results read from the results topic: raw values and first arrival per command."""

    finals: dict[str, list[bytes]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    arrived_at: dict[str, float] = field(default_factory=dict)  # epoch seconds
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, record: Message) -> None:
        event = orjson.loads(record.value)
        status = event["data"]["status"]
        if status in FINAL:
            command_id = event["subject"]
            self.finals.setdefault(command_id, []).append(record.value)
            self.statuses[command_id] = status
            self.arrived.setdefault(command_id, time.monotonic())
            self.arrived_at.setdefault(command_id, time.time())
            self.progress.set()

    async def wait(self, command_ids: list[str], timeout: float) -> bool:
        """Until every command has a final result (``True``) or ``timeout`` passed."""
        try:
            async with asyncio.timeout(timeout):
                while any(c not in self.arrived for c in command_ids):
                    self.progress.clear()
                    await self.progress.wait()
        except TimeoutError:
            return False
        return True


@asynccontextmanager
async def results_reader(bootstrap: str, topic: str) -> AsyncIterator[Results]:
    results = Results()
    async with tail_topic(bootstrap, topic, results.add):
        yield results


@dataclass
class Level:
    in_flight: int
    commands: int
    seconds: float
    succeeded: int
    latencies: list[float]
    bird_requests: Counter[str]
    rss_mb: float
    connector_problems: list[str]
    result_problems: list[str]

    @property
    def rate(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Target:
    """The broker a run uses and the bridge's settings for it (``--bridge-env`` included)."""

    bootstrap: str
    settings: dict[str, str]
    extra: dict[str, str]  # --bridge-env, over everything else


async def run_level(
    broker: Target,
    sim: SimulatorServer,
    in_flight: int,
    count: int,
    args: argparse.Namespace,
    work: Path,
) -> Level:
    suffix = f"{in_flight}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = bridge_env(
        broker.bootstrap,
        port,
        suffix,
        broker.settings,
        **simulator_settings(sim.url),
        BRIDGE_COMMANDS_MAX_IN_FLIGHT=str(in_flight),
        BRIDGE_COMMANDS_FOLLOW_INTERVAL_S=str(args.follow_interval),
    )
    env.update(broker.extra)
    warmup = f"warmup-{suffix}"
    ids = [f"cmd-{suffix}-{n:04d}" for n in range(count)]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        async with (
            Child(
                f"bridge-{in_flight}", bridge_argv("commands"), port=port, env=env, log_dir=work
            ) as bridge,
            results_reader(broker.bootstrap, env["BRIDGE_TOPIC_RESULTS"]) as results,
        ):
            topic = env["BRIDGE_TOPIC_COMMANDS"]
            await send_creates(
                producer, topic, [warmup]
            )  # the consumer group forms and connections open first
            if not await results.wait([warmup], args.timeout):
                raise RuntimeError(f"no result for the warm-up command; see {bridge.log_path}")
            sim.simulator.journal.clear()
            started = time.monotonic()
            await send_creates(producer, topic, ids)
            await results.wait(ids, args.timeout)
            finished = max((results.arrived.get(c, started) for c in ids), default=started)
            await asyncio.sleep(args.settle)  # late duplicates would show up here
            rss = bridge.peak_rss_mb()
    finally:
        await producer.stop()
    requests = Counter(
        "429" if r.status == 429 else r.method for r in sim.simulator.journal.query({})
    )
    return Level(
        in_flight=in_flight,
        commands=count,
        seconds=finished - started,
        succeeded=sum(results.statuses.get(c) == "succeeded" for c in ids),
        latencies=[results.arrived[c] - started for c in ids if c in results.arrived],
        bird_requests=requests,
        rss_mb=rss,
        connector_problems=connector_problems(sim, [warmup, *ids]),
        result_problems=result_problems(results, [warmup, *ids]),
    )


def connector_problems(sim: SimulatorServer, command_ids: list[str]) -> list[str]:
    """Commands that do not have exactly one connector at Bird (connectors carry their name)."""
    names = Counter(c.name for c in sim.simulator.state.connectors.values())
    return [f"{c}: {names[c]} connectors" for c in command_ids if names[c] != 1]


def result_problems(results: Results, command_ids: list[str]) -> list[str]:
    """Commands without exactly one distinct final result (byte-identical repeats are fine)."""
    found = [(c, len(set(results.finals.get(c, [])))) for c in command_ids]
    return [f"{c}: {n} distinct final results" for c, n in found if n != 1]


@dataclass
class Overhead:
    """The bridge's own time per command at ``in_flight`` commands at once, Bird at zero
    latency: end-to-end (sent -> final result read) minus the command's Bird requests."""

    in_flight: int
    end_to_end: list[float]  # seconds
    bird: list[float]  # seconds, per command
    succeeded: int
    cpu_s: float

    @property
    def added(self) -> list[float]:
        return [e - b for e, b in zip(self.end_to_end, self.bird, strict=True)]

    @property
    def cpu_per_command_us(self) -> float:
        return 1e6 * self.cpu_s / max(1, self.succeeded)


@dataclass
class Sustained:
    """Creates sent at ``rate`` per second for ``seconds``; when their results came."""

    rate: float
    seconds: float
    sent: int
    succeeded: int
    finished_s: float  # from the first send to the last final result
    results_s: float  # from the first final result to the last
    latencies: list[float]  # seconds, each command's send to its final result
    cpu_s: float
    rss_mb: float

    @property
    def cpu_per_command_us(self) -> float:
        return 1e6 * self.cpu_s / max(1, self.succeeded)

    @property
    def achieved(self) -> float:
        """Completed per second while results came (first to last final result): the
        rate the process kept up with. Counting from the first send instead would add the
        last command's own latency to the 10 s and could never reach the rate sent."""
        return (self.succeeded - 1) / self.results_s if self.results_s > 0 else 0.0


@dataclass
class Processes:
    """The processes under measure, as one: CPU summed, the largest peak RSS."""

    children: list[Child]

    def cpu_seconds(self) -> float:
        return sum(child.cpu_seconds() for child in self.children)

    def peak_rss_mb(self) -> float:
        return max(child.peak_rss_mb() for child in self.children)


def bird_seconds(sim: SimulatorServer, command_ids: list[str]) -> dict[str, float]:
    """Each command's time waiting on Bird: from the start of its first GET (connector or
    channel, named in the path) to the end of its last one, the bridge's polls between
    them included (Bird had not finished the install), plus one POST. A POST's path does
    not name its connector, so each is taken as the shortest POST seen, and the gap
    between the POST and the first GET counts as the bridge's: its share errs upwards."""
    journal = sim.simulator.journal.query({})
    posts = [r.duration_ms for r in journal if r.method == "POST"]
    post_s = min(posts, default=0.0) / 1000
    spans: dict[str, tuple[float, float]] = {}  # last path segment -> (first start, last end)
    for r in journal:
        if r.method == "GET":
            last = r.path.rstrip("/").rsplit("/", 1)[-1]
            start = r.at.timestamp()
            end = start + r.duration_ms / 1000
            first, latest = spans.get(last, (start, end))
            spans[last] = (min(first, start), max(latest, end))
    wanted = set(command_ids)
    found: dict[str, float] = {}
    for connector in sim.simulator.state.connectors.values():
        if connector.name in wanted:
            ids = [connector.id] + ([connector.channel.id] if connector.channel else [])
            found_spans = [spans[i] for i in ids if i in spans]
            waited = (
                max(e for _, e in found_spans) - min(s for s, _ in found_spans)
                if found_spans
                else 0.0
            )
            found[connector.name] = post_s + waited
    return found


STEPS = (
    "consume",
    "ledger started",
    "POST",
    "ledger accepted",
    "result accepted",
    "GETs",
    "ledger final",
    "result final",
    "between steps",
    "result read",
)


def command_steps(spans: list[KeptSpan], sent: float, arrived: float) -> dict[str, float] | None:
    """One command's time per step in seconds, from the spans of its trace: ``consume`` from
    sending the record to the start of its ``process`` span; each ledger write, Bird request
    and result publish; ``between steps`` the rest of the ``process`` span (the bridge's own
    code, and waiting for the event loop); ``result read`` from the end of the ``process``
    span to the harness reading the final result. None without a ``process`` span."""
    process = next((s for s in spans if s.name.startswith("process ")), None)
    if process is None:
        return None
    steps = dict.fromkeys(STEPS, 0.0)
    ledger = sorted((s for s in spans if s.name == "ledger write"), key=lambda s: s.start)
    for span in ledger:
        steps[f"ledger {span.attributes.get('bridge.ledger.state', '?')}"] = span.end - span.start
    publishes = sorted((s for s in spans if s.name.startswith("publish ")), key=lambda s: s.start)
    if publishes:
        steps["result final"] = publishes[-1].end - publishes[-1].start
    if len(publishes) > 1:
        steps["result accepted"] = publishes[0].end - publishes[0].start
    for span in spans:
        if span.name.startswith("POST "):
            steps["POST"] += span.end - span.start
        elif span.name.startswith("GET "):
            steps["GETs"] += span.end - span.start
    children = sum(v for k, v in steps.items() if k in STEPS[1:8])
    steps["consume"] = process.start - sent
    steps["between steps"] = (process.end - process.start) - children
    steps["result read"] = arrived - process.end
    return steps


def steps_report(steps: list[dict[str, float]]) -> str:
    rows = []
    for name in STEPS:
        ms = [1000 * s[name] for s in steps]
        rows.append(
            [
                name,
                f"{sum(ms) / len(ms):.1f}",
                f"{percentile(ms, 50):.1f}",
                f"{percentile(ms, 99):.1f}",
            ]
        )
    return table(["step", "mean ms", "p50 ms", "p99 ms"], rows)


async def traced_steps(
    sink: OtlpSink, results: Results, traces: dict[str, str], sent: dict[str, float]
) -> list[dict[str, float]]:
    """Each traced command's steps, once its spans arrived (at most 15 s)."""
    deadline = time.monotonic() + 15
    by_trace: dict[str, list[KeptSpan]] = {}
    while time.monotonic() < deadline:
        by_trace = {}
        for span in sink.kept:
            by_trace.setdefault(span.trace_id, []).append(span)
        if all(
            any(s.name.startswith("process ") for s in by_trace.get(t, [])) for t in traces.values()
        ):
            break
        await asyncio.sleep(0.2)
    found = [
        command_steps(by_trace.get(trace, []), sent[c], results.arrived_at[c])
        for c, trace in traces.items()
        if c in results.arrived_at
    ]
    return [s for s in found if s is not None]


def naive_argv(env: dict[str, str], port: int, follow_interval: float) -> list[str]:
    """``bench.servers naive-commands`` with the bridge's topics, Bird, Kafka client settings
    and event loop (from ``env``, the bridge's settings)."""
    config = config_module.load(env)
    kafka = config.kafka
    return [
        sys.executable,
        "-m",
        "bench.servers",
        "naive-commands",
        f"--port={port}",
        f"--bootstrap={kafka.bootstrap_servers}",
        f"--topic={config.topics.commands}",
        f"--results-topic={config.topics.results}",
        f"--bird-url={env['BRIDGE_BIRD_API_URL']}",
        f"--workspace={env['BRIDGE_BIRD_WORKSPACE_ID']}",
        f"--access-key={env['BRIDGE_BIRD_ACCESS_KEY']}",
        f"--follow-interval={follow_interval:g}",
        f"--linger-ms={kafka.linger_ms}",
        f"--max-batch-bytes={kafka.max_batch_bytes}",
        f"--fetch-max-wait-ms={kafka.fetch_max_wait_ms}",
        f"--loop={config.event_loop}",
    ]


async def run_overhead(
    broker: Target,
    sim: SimulatorServer,
    args: argparse.Namespace,
    work: Path,
    sink: OtlpSink | None = None,
    *,
    naive: bool = False,
    replicas: int = 1,
) -> tuple[Overhead, Sustained, list[dict[str, float]]]:
    """One ``bridge run --role commands`` (defaults: 100 in flight), Bird at zero latency and
    channels active at once: ``--overhead-commands`` creates sent at once, then creates at
    ``--sustain-rate`` per second for ``--sustain-seconds``. ``sink``: the bridge exports
    its spans there, and the burst's commands are timed step by step. ``naive``: the same
    for the naive executor (``bench.servers naive-commands``) instead of the bridge.
    ``replicas``: that many bridges in one consumer group (started one after the other,
    each ready once the group gave it its partitions); CPU summed over them, peak RSS the
    largest."""
    suffix = f"{'naive' if naive else 'overhead'}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = bridge_env(
        broker.bootstrap,
        port,
        suffix,
        broker.settings,
        **simulator_settings(sim.url),
        BRIDGE_COMMANDS_MAX_IN_FLIGHT=str(max(args.overhead_commands, args.sustain_in_flight)),
        BRIDGE_COMMANDS_FOLLOW_INTERVAL_S=str(args.follow_interval),
    )
    env.update(broker.extra)
    if sink is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
        env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    burst = [f"burst-{suffix}-{n:04d}" for n in range(args.overhead_commands)]
    total = int(args.sustain_rate * args.sustain_seconds)
    steady = [f"steady-{suffix}-{n:06d}" for n in range(total)]
    if naive:  # the bridge creates its topics; the naive executor does not
        config = config_module.load(env)
        await ensure_topics(config.kafka, [config.topics.commands, config.topics.results])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        async with AsyncExitStack() as stack:
            if naive:
                argv = naive_argv(env, port, args.follow_interval)
                processes = [Child("naive-commands", argv, port=port, env=env, log_dir=work)]
            else:
                ports = [port, *(free_port() for _ in range(replicas - 1))]
                processes = [
                    Child(
                        f"bridge-overhead-{n}" if n else "bridge-overhead",
                        bridge_argv("commands"),
                        port=p,
                        env={**env, "BRIDGE_HTTP_PORT": str(p)},
                        log_dir=work,
                    )
                    for n, p in enumerate(ports)
                ]
            for process in processes:
                await stack.enter_async_context(process)
            bridge = Processes(processes)
            results = await stack.enter_async_context(
                results_reader(broker.bootstrap, env["BRIDGE_TOPIC_RESULTS"])
            )
            topic = env["BRIDGE_TOPIC_COMMANDS"]
            warmup = [f"warmup-{suffix}-{n}" for n in range(20)]
            await send_creates(producer, topic, warmup)
            if not await results.wait(warmup, args.timeout):
                raise RuntimeError(f"no result for the warm-up commands; see {work}")
            sim.simulator.journal.clear()
            cpu = bridge.cpu_seconds()
            started = time.monotonic()
            traces = {c: uuid.uuid4().hex for c in burst} if sink is not None else {}
            sent: dict[str, float] = {}
            await send_creates(producer, topic, burst, traces, sent)
            await results.wait(burst, args.timeout)
            burst_cpu = bridge.cpu_seconds() - cpu
            steps = await traced_steps(sink, results, traces, sent) if sink is not None else []
            bird = bird_seconds(sim, burst)
            ok = [c for c in burst if c in results.arrived and c in bird]
            overhead = Overhead(
                in_flight=args.overhead_commands,
                end_to_end=[results.arrived[c] - started for c in ok],
                bird=[bird[c] for c in ok],
                succeeded=sum(results.statuses.get(c) == "succeeded" for c in burst),
                cpu_s=burst_cpu,
            )
            # Sustained: a batch every 20 ms at the given rate, then wait for the last result.
            cpu = bridge.cpu_seconds()
            started = time.monotonic()
            per_tick = max(1, round(args.sustain_rate * 0.02))
            sends = []
            steady_sent: dict[str, float] = {}
            for n in range(0, total, per_tick):
                due = started + n / args.sustain_rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                for c in steady[n : n + per_tick]:
                    steady_sent[c] = time.monotonic()
                    sends.append(
                        await producer.send(topic, orjson.dumps(create_command(c)), key=c.encode())
                    )
            await asyncio.gather(*sends)
            await results.wait(steady, args.timeout)
            arrivals = [results.arrived[c] for c in steady if c in results.arrived]
            last = max(arrivals, default=started)
            sustained = Sustained(
                rate=args.sustain_rate,
                seconds=args.sustain_seconds,
                sent=total,
                succeeded=sum(results.statuses.get(c) == "succeeded" for c in steady),
                finished_s=last - started,
                results_s=last - min(arrivals, default=last),
                latencies=[
                    results.arrived[c] - steady_sent[c] for c in steady if c in results.arrived
                ],
                cpu_s=bridge.cpu_seconds() - cpu,
                rss_mb=bridge.peak_rss_mb(),
            )
    finally:
        await producer.stop()
    return overhead, sustained, steps


ADDED_P99_MS = 20.0
# Of the rate sent, completed while results came: the sends go out in 20 ms batches and
# the first and last results' latencies differ by a few of them.
SUSTAIN_SHARE = 0.99


def _burst_row(name: str, o: Overhead) -> list[str]:
    ms = [1000 * v for v in o.added]
    e2e = [1000 * v for v in o.end_to_end]
    bird = [1000 * v for v in o.bird]
    return [
        name,
        f"{o.in_flight} at once",
        f"{o.succeeded}/{o.in_flight}",
        f"{percentile(e2e, 50):.1f} / {percentile(e2e, 99):.1f}",
        f"{percentile(bird, 50):.2f} / {percentile(bird, 99):.2f}",
        f"{percentile(ms, 50):.1f} / {percentile(ms, 99):.1f}",
        f"{o.cpu_per_command_us:.0f}",
    ]


def _sustained_row(name: str, s: Sustained) -> list[str]:
    return [
        name,
        f"{s.rate:g}/s for {s.seconds:g} s",
        f"{s.succeeded}/{s.sent}",
        f"{s.finished_s:.1f}",
        f"{s.achieved:.0f}",
        f"{1000 * percentile(s.latencies, 50):.0f} / {1000 * percentile(s.latencies, 99):.0f}",
        f"{s.cpu_per_command_us:.0f}",
        f"{100 * s.cpu_s / max(s.finished_s, 1e-9):.0f}",
        f"{s.rss_mb:.1f}",
    ]


def overhead_report(
    o: Overhead,
    s: Sustained,
    *,
    naive: tuple[Overhead, Sustained] | None = None,
    replicas: int = 1,
) -> tuple[str, list[tuple[str, bool]]]:
    """The bridge's burst and sustained tables (with the naive executor's rows beside when
    measured, and the ratios), and the targets' checks (the bridge's). With ``replicas``
    above 1 the rows are those bridges' together, and the sustained target (one process)
    is not checked."""
    name = "bridge" if replicas == 1 else f"bridge x{replicas}"
    bursts = [_burst_row(name, o)]
    steadies = [_sustained_row(name, s)]
    if naive is not None:
        bursts.append(_burst_row("naive executor", naive[0]))
        steadies.append(_sustained_row("naive executor", naive[1]))
    text = table(
        [
            "process",
            "commands",
            "succeeded",
            "end-to-end p50/p99 ms",
            "Bird p50/p99 ms",
            "own p50/p99 ms",
            "CPU us/cmd",
        ],
        bursts,
    )
    text += "\n\n" + table(
        [
            "process",
            "creates sent",
            "succeeded",
            "seconds to last result",
            "completed/s",
            "latency p50/p99 ms",
            "CPU us/cmd",
            "CPU %",
            "peak RSS MB",
        ],
        steadies,
    )
    ms = [1000 * v for v in o.added]
    p99 = percentile(ms, 99)
    if naive is not None:
        n_o, n_s = naive
        n_p99 = percentile([1000 * v for v in n_o.added], 99)
        ratios = [
            ["own latency p99, at once", f"{p99 / n_p99:.2f}" if n_p99 > 0 else "-"],
            [
                "CPU per command, at once",
                f"{o.cpu_per_command_us / n_o.cpu_per_command_us:.2f}"
                if n_o.cpu_per_command_us
                else "-",
            ],
            [
                "CPU per command, sustained",
                f"{s.cpu_per_command_us / n_s.cpu_per_command_us:.2f}"
                if n_s.cpu_per_command_us
                else "-",
            ],
        ]
        text += "\n\nbridge / naive executor (same broker, same simulator, one after the other):\n"
        text += table(["figure", "ratio"], ratios)
    on = "" if replicas == 1 else f", {replicas} replicas in one consumer group"
    checks = [
        (
            f"the bridge's own latency per command p99 < {ADDED_P99_MS:g} ms at "
            f"{o.in_flight} in flight ({p99:.1f} ms{on})",
            o.succeeded == o.in_flight and p99 < ADDED_P99_MS,
        ),
    ]
    if replicas > 1:
        return text, checks
    checks += [
        (
            f"one commands process sustains {s.rate:g} creates/s ({s.achieved:.0f}/s completed "
            f"from the first result to the last, at least {SUSTAIN_SHARE:.0%} of the rate; "
            f"{s.succeeded} of {s.sent} succeeded)",
            s.succeeded == s.sent and s.achieved >= SUSTAIN_SHARE * s.rate,
        ),
    ]
    return text, checks


def report(levels: list[Level]) -> str:
    base = levels[0].rate if levels and levels[0].in_flight == 1 else None
    rows = []
    for lv in levels:
        per_command = {k: v / (lv.commands or 1) for k, v in lv.bird_requests.items()}
        rows.append(
            [
                str(lv.in_flight),
                str(lv.commands),
                str(lv.succeeded),
                f"{lv.seconds:.1f}",
                f"{lv.rate:.2f}",
                f"{percentile(lv.latencies, 50):.2f}",
                f"{percentile(lv.latencies, 99):.2f}",
                f"{lv.rate / base:.1f}x" if base else "-",
                f"{per_command.get('POST', 0):.2f}/{per_command.get('GET', 0):.2f}",
                str(lv.bird_requests.get("429", 0)),
                f"{lv.rss_mb:.1f}",
            ]
        )
    headers = [
        "in-flight",
        "commands",
        "succeeded",
        "seconds",
        "commands/s",
        "p50 s",
        "p99 s",
        "vs 1",
        "Bird POST/GET per cmd",
        "429s",
        "peak RSS MB",
    ]
    return table(headers, rows)


async def main(args: argparse.Namespace) -> int:
    logs.configure(fmt="console", level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    settings = SimulatorSettings(
        install_delay_s=0.5,
        activate_delay_s=1.5,
        request_log_size=1_000_000,
        faults=FaultSettings(
            latency_s=args.latency,
            rate_limit_get_per_s=RATE_LIMIT,
            rate_limit_post_per_s=RATE_LIMIT,
        ),
    )
    levels: list[Level] = []
    # Bird answering at once, and a channel active as soon as it is created.
    instant = SimulatorSettings(
        install_delay_s=0,
        activate_delay_s=0,
        request_log_size=1_000_000,
        faults=FaultSettings(
            latency_s=0, rate_limit_get_per_s=RATE_LIMIT, rate_limit_post_per_s=RATE_LIMIT
        ),
    )
    overhead: tuple[Overhead, Sustained] | None = None
    naive: tuple[Overhead, Sustained] | None = None
    steps: list[dict[str, float]] = []
    broker, broker_settings = bench_broker(args.broker, work)
    target = Target(broker.bootstrap, broker_settings, dict(args.bridge_env))
    sink = OtlpSink(keep_spans=True) if args.steps else None
    broker.start()
    try:
        async with SimulatorServer(settings) as sim:
            for in_flight, count in args.levels:
                levels.append(await run_level(target, sim, in_flight, count, args, work))
        if args.overhead_commands:
            if sink is not None:
                await sink.start()
            try:
                async with SimulatorServer(instant) as sim:
                    costs, sustained, steps = await run_overhead(
                        target, sim, args, work, sink, replicas=args.replicas
                    )
                    overhead = (costs, sustained)
                    if args.naive:
                        n_costs, n_sustained, _ = await run_overhead(
                            target, sim, args, work, naive=True
                        )
                        naive = (n_costs, n_sustained)
            finally:
                if sink is not None:
                    await sink.stop()
    finally:
        broker.stop()
    print(banner("Commands benchmark", "bench.commands"))
    print(f"broker: {BROKERS[args.broker]}")
    if args.bridge_env:
        print("bridge settings: " + " ".join(f"{k}={v}" for k, v in args.bridge_env))
    print(
        f"Bird simulator: install {settings.install_delay_s:g} s + activate "
        f"{settings.activate_delay_s:g} s, {1000 * args.latency:g} ms latency per request, "
        f"rate limits raised to {RATE_LIMIT}/s (GET and POST); bridge: "
        f"BRIDGE_BIRD_RATE_GET_PER_S=BRIDGE_BIRD_RATE_POST_PER_S={RATE_LIMIT}, "
        f"BRIDGE_COMMANDS_FOLLOW_INTERVAL_S={args.follow_interval:g}"
    )
    print(
        "seconds: from sending the batch to its last final result; p50/p99: from sending the "
        "batch to each command's final result (waiting for a free slot included)\n"
    )
    print(report(levels))
    print()
    ok = True
    for lv in levels:
        for label, problems in (
            (
                f"one connector at Bird per create ({lv.commands} + 1 warm-up)",
                lv.connector_problems,
            ),
            ("one distinct final result per command", lv.result_problems),
        ):
            ok &= not problems
            print(f"{verdict(not problems)}  in-flight {lv.in_flight}: {label}")
            for problem in problems[:5]:
                print(f"        {problem}")
    if overhead is not None:
        text, checks = overhead_report(*overhead, naive=naive, replicas=args.replicas)
        replicas = "one" if args.replicas == 1 else f"{args.replicas} (one consumer group)"
        print(
            f"\nOverhead: {replicas} `bridge run --role commands` (BRIDGE_COMMANDS_MAX_IN_FLIGHT="
            f"{max(args.overhead_commands, args.sustain_in_flight)}, "
            f"BRIDGE_COMMANDS_FOLLOW_INTERVAL_S={args.follow_interval:g}), Bird simulator at "
            "0 ms latency, install and activation delays 0 s, rate limits raised to "
            f"{RATE_LIMIT}/s. The bridge's own time per command: from sending it to reading "
            "its final result, minus its time waiting on Bird (first to last GET of its "
            "connector and channel, polls between included, plus the shortest POST seen)\n"
        )
        print(text + "\n")
        if steps:
            print(
                f"Steps of the {len(steps)} commands sent at once, from the bridge's spans "
                "(exported over OTLP/HTTP to this process, so the figures above include the "
                "cost of exporting)\n"
            )
            print(steps_report(steps) + "\n")
        for label, good in checks:
            ok &= good
            print(f"{verdict(good)}  {label}")
    rates = {lv.in_flight: lv.rate for lv in levels}
    if 1 in rates and 100 in rates:
        ratio = rates[100] / rates[1] if rates[1] else 0.0
        ok &= ratio >= TARGET_RATIO
        print(
            f"{verdict(ratio >= TARGET_RATIO)}  100 in-flight >= {TARGET_RATIO}x the throughput "
            f"of 1 in-flight ({ratio:.1f}x)"
        )
    print(f"\nlogs: {work}")
    return 0 if ok else 1


def parse_levels(text: str) -> list[tuple[int, int]]:
    if not text:
        return []
    pairs = [item.split(":") for item in text.split(",")]
    return [(int(in_flight), int(count)) for in_flight, count in pairs]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--levels",
        type=parse_levels,
        default=parse_levels("1:10,10:100,100:400"),
        help="IN_FLIGHT:COMMANDS,... (default 1:10,10:100,100:400)",
    )
    parser.add_argument(
        "--broker",
        choices=sorted(BROKERS),
        default="embedded",
        help="embedded: Tansu, as `bridge dev`; kafka: one Apache Kafka node "
        "(Java and Maven, fetched as for the tests)",
    )
    add_bridge_env_option(
        parser,
        "extra setting for the bridge, over the benchmark's own, e.g. "
        "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS=500; repeatable",
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="time each step of the commands sent at once from the bridge's spans, "
        "exported to a receiver in this process (adds the cost of exporting)",
    )
    parser.add_argument("--follow-interval", type=float, default=0.25, help="seconds")
    parser.add_argument("--latency", type=float, default=0.05, help="Bird latency, seconds")
    parser.add_argument("--timeout", type=float, default=180.0, help="per level, seconds")
    parser.add_argument("--settle", type=float, default=1.0, help="wait for late duplicates")
    parser.add_argument(
        "--overhead-commands",
        type=int,
        default=100,
        help="commands sent at once (and the in-flight limit) for the bridge's own latency "
        "per command, Bird at zero latency (0: skip that part and the sustained rate)",
    )
    parser.add_argument("--sustain-rate", type=float, default=500.0, help="creates per second")
    parser.add_argument("--sustain-seconds", type=float, default=10.0)
    parser.add_argument(
        "--sustain-in-flight",
        type=int,
        default=400,
        help="the bridge's BRIDGE_COMMANDS_MAX_IN_FLIGHT for both overhead parts (at least "
        "--overhead-commands): a create is in flight until Bird reports its channel active, "
        "one poll interval or more even at zero latency",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="commands-role bridges in one consumer group for both overhead parts (the "
        "commands topic's partitions are divided among them; the sustained target, one "
        "process, is checked only with 1)",
    )
    parser.add_argument(
        "--no-naive",
        dest="naive",
        action="store_false",
        help="skip the naive executor (bench.servers naive-commands) beside the bridge's "
        "overhead parts",
    )
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
