"""Ingest benchmark: signed webhooks over loopback against the bridge and two baselines.

One invocation starts a broker (the embedded one, or with ``--broker kafka`` one node of
Apache Kafka with the bridge's production defaults) and every target's server process, then
measures each target ``--runs`` times, interleaved (a, b, c, c, b, a, ...), each run a
warm-up and a measured wrk run at the same concurrency:

    (a) bridge  ``bridge run --role ingest`` (verify, normalize, dedupe, publish, 204)
    (b) bare    ``bench.servers bare``: 204, nothing else
    (c) naive   ``bench.servers naive``: no checks, one ``send_and_wait`` per request

``--compare workers`` adds the bridge with ``BRIDGE_HTTP_WORKERS=2``; ``--compare uvloop``
the bridge and the bare handler on uvloop; ``--compare required`` a handler doing the work
every webhook requires and nothing else (``bench.servers required``: the bridge's own
verify and normalize, one keyed ``send_and_wait``), the floor for that work;
``--compare rdkafka`` the naive and required handlers publishing with librdkafka
(confluent-kafka) instead of aiokafka: what another Kafka client would change. Figures are
the median of the runs with min and max; the targets (PASS/FAIL) are checked on the
medians of per-run ratios.

Every request carries a distinct ``messagebird-request-id`` (the bridge dedupes on it). The
signature covers timestamp, URL and body only, so a few hundred pre-signed bodies are cycled
with fresh ids. Afterwards each bridge's topic is read back and compared with its 204 count.

    python -m bench.ingest [--broker embedded|kafka] [--runs 3] [--duration 8] [--warmup 2]
                           [--compare workers] [--compare uvloop] [--compare required]
                           [--compare rdkafka]
                           [--connections 64] [--profile out.txt] [--workspaces 500]
                           [--before FOLDER]

With ``--before FOLDER`` the ``bridge`` package in FOLDER (another revision's) runs as one
more target, interleaved, and the report compares the two from the same runs.

With ``--workspaces N`` the bridge serves N workspaces (``BRIDGE_WORKSPACES_FILE``) and the
webhooks go to the last one's ``/webhooks/bird/<workspaceId>``, signed with its key.

With ``--tracing`` it measures what tracing costs instead: the bridge alone, in ``--rounds``
rounds (the order turning each round), three ways: requests without ``traceparent`` (but
a header of the same length the bridge ignores, so wrk and the HTTP parser do the same
work); with one (propagation only: no OTEL_* endpoint); and with one and spans exported
over OTLP/HTTP to a local receiver (``bench.otlp_sink``, in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from bench.common import (
    HOST,
    PUBLIC_URL,
    SIGNING_KEY,
    Child,
    add_bridge_env_option,
    banner,
    bench_broker,
    bridge_argv,
    bridge_env,
    read_event_ids,
    table,
    verdict,
)
from bench.otlp_sink import OtlpSink
from bridge import config as config_module
from bridge import logs
from bridge.ingest.verify import sign
from bridge.kafka.clients import ensure_topics
from bridge.kafka.embedded import EmbeddedBroker, free_port
from tests.kafka_cluster import KAFKA_VERSION, KafkaCluster

TIMESTAMP = "1751742552"
BROKERS = {
    "embedded": "the embedded broker (Tansu, memory only)",
    "kafka": f"Apache Kafka {KAFKA_VERSION} (one KRaft node, tests/kafka_cluster.py)",
}
TARGETS = ("bridge", "bare", "naive")

LUA = r"""
local rows = {
%(rows)s
}
local timestamp = "%(timestamp)s"
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
  counter = 0
  ok = 0
  other = 0
end

function request()
  counter = counter + 1
  local row = rows[counter %% #rows + 1]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["messagebird-signature"] = row[2],
    ["messagebird-request-timestamp"] = timestamp,
    ["messagebird-request-id"] = prefix .. counter,%(trace)s
  }, row[1])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_total, other_total = 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    other_total = other_total + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %%d, "duration_us": %%d, "ok": %%d, "non2xx": %%d, "socket_errors": %%d,'
    .. ' "timeouts": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\n',
    summary.requests, summary.duration, ok_total, other_total,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def channel_event(n: int) -> bytes:
    channel_id = str(uuid.UUID(int=n + 1))
    payload = {
        "id": channel_id,
        "platformId": "sms",
        "name": f"Support SMS {n}",
        "connectorId": str(uuid.uuid4()),
        "identifier": f"+3161{n:07d}",
        "status": "active",
        "createdAt": "2025-07-05T19:08:46.010Z",
        "updatedAt": "2025-07-05T19:09:12.400Z",
    }
    return orjson.dumps({"service": "channels", "event": "channel.updated", "payload": payload})


def lua_script(
    bodies: int,
    key: str = SIGNING_KEY,
    url: str = PUBLIC_URL,
    *,
    traced: bool = False,
    padded: bool = False,
) -> str:
    """``traced``: every request carries a ``traceparent`` (one trace per body);
    ``padded``: the same value under a header the bridge ignores (``x-bench-padding``),
    so a run without trace context sends the same bytes."""
    rows = []
    for n in range(bodies):
        body = channel_event(n).decode()
        assert "]==]" not in body
        trace = f', "00-{uuid.UUID(int=n + 1).hex}-{n + 1:016x}-01"' if traced or padded else ""
        rows.append(f'  {{[==[{body}]==], "{sign(key, TIMESTAMP, url, body.encode())}"{trace}}},')
    name = "traceparent" if traced else "x-bench-padding"
    trace_header = f'\n    ["{name}"] = row[3],' if traced or padded else ""
    return LUA % {"rows": "\n".join(rows), "timestamp": TIMESTAMP, "trace": trace_header}


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    ok: int
    non2xx: int
    socket_errors: int
    timeouts: int
    p50_us: int
    p99_us: int
    max_us: int

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)


async def run_wrk(script: Path, url: str, args: argparse.Namespace, seconds: float) -> WrkResult:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s"]
    argv += ["--timeout", "10s", "-s", str(script), url, "--", uuid.uuid4().hex[:12]]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(seconds + 30):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
    for line in out.decode().splitlines():
        if line.startswith("BENCH "):
            return WrkResult(**orjson.loads(line[6:]))
    raise RuntimeError(f"wrk printed no result:\n{out.decode()}")


@dataclass
class Measured:
    result: WrkResult
    warmup: WrkResult
    cpu_s: float  # server CPU time during the measured run (all its processes)

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_s / self.result.requests

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / (self.result.duration_us / 1e6)


@dataclass(frozen=True)
class Target:
    """One server under load: its label, how to start it, and extra environment."""

    name: str
    label: str
    kind: str  # "bridge", "bare", "naive" or "required"
    env: tuple[tuple[str, str], ...] = ()
    extra_argv: tuple[str, ...] = ()


RDKAFKA = ("--client", "rdkafka")

MAIN = (
    # On asyncio's loop, as the bare and naive handlers: the targets compare like with like.
    Target("bridge", "(a) bridge", "bridge", (("BRIDGE_EVENT_LOOP", "asyncio"),)),
    Target("bare", "(b) bare aiohttp 204", "bare"),
    Target("naive", "(c) naive send_and_wait", "naive"),
)

VARIANTS: dict[str, tuple[Target, ...]] = {
    "workers": (
        Target("bridge-2w", "(a2) bridge, 2 workers", "bridge", (("BRIDGE_HTTP_WORKERS", "2"),)),
    ),
    "required": (Target("required", "(d) required work, send_and_wait", "required"),),
    # The naive and required handlers with librdkafka (confluent-kafka) for aiokafka.
    "rdkafka": (
        Target("naive-rdkafka", "(c) naive, librdkafka", "naive", extra_argv=RDKAFKA),
        Target("required-rdkafka", "(d) required, librdkafka", "required", extra_argv=RDKAFKA),
    ),
    "uvloop": (
        Target(
            "bridge-uvloop", "(a) bridge on uvloop", "bridge", (("BRIDGE_EVENT_LOOP", "uvloop"),)
        ),
        Target("bare-uvloop", "(b) bare, uvloop", "bare", extra_argv=("--loop", "uvloop")),
    ),
}


def workspace_key(n: int) -> str:
    return f"bench-signing-key-{n:06d}"


def write_workspaces(folder: Path, count: int) -> tuple[Path, str]:
    """A workspaces file of ``count`` workspaces (ten per organization); the last one's id."""
    ids = [str(uuid.UUID(int=n + 1)) for n in range(count)]
    tables = [
        f'[[workspace]]\nid = "{ws}"\norganizationId = "{uuid.UUID(int=10_000 + n // 10)}"\n'
        f'accessKey = "bench-access-key-{n // 10:06d}"\nsigningKey = "{workspace_key(n)}"\n'
        for n, ws in enumerate(ids)
    ]
    path = folder / "workspaces.toml"
    path.write_text("\n".join(tables))
    return path, ids[-1]


async def measure(
    server: Child,
    script: Path,
    args: argparse.Namespace,
    profile: Path | None = None,
    path: str = "/webhooks/bird",
) -> Measured:
    url = f"http://{HOST}:{server.port}{path}"
    warmup = await run_wrk(script, url, args, args.warmup)
    spy = None
    if profile is not None:
        spy = await asyncio.create_subprocess_exec(
            *["py-spy", "record", "-r", "100", "-f", "raw"],
            *["-d", str(int(args.duration)), "-o", str(profile), "-p", str(server.pid)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    cpu = server.cpu_seconds()
    result = await run_wrk(script, url, args, args.duration)
    cpu = server.cpu_seconds() - cpu
    if spy is not None:
        async with asyncio.timeout(30):
            await spy.wait()
    return Measured(result, warmup, cpu)


def profile_summary(raw: Path, count: int = 15) -> str:
    """Where the samples of py-spy's collapsed stacks end: by package, then by function
    (self time, with the function's inclusive share beside it)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        samples += int(n)
        own[frames[-1]] += int(n)
        packages[frames[-1].rpartition("(")[2].split("/")[0].rstrip(")")] += int(n)
        for frame in set(frames):
            total[frame] += int(n)

    def share(n: int) -> str:
        return f"{100 * n / samples:.1f}"

    by_package = [[name, share(n)] for name, n in packages.most_common(8)]
    by_function = [
        [frame[:90], share(n), share(total[frame])] for frame, n in own.most_common(count)
    ]
    return (
        f"{samples} samples\n{table(['package (self time)', '%'], by_package)}\n\n"
        f"{table(['function', 'self %', 'incl %'], by_function)}"
    )


# The bridge package of another revision, ahead of this checkout's (``--before``).
BEFORE_ENV = "BENCH_BRIDGE_FROM"
_RUN_FROM = (
    "import os, runpy, sys; sys.path.insert(0, os.environ['BENCH_BRIDGE_FROM']); "
    "sys.argv[0] = 'bridge'; runpy.run_module('bridge', run_name='__main__')"
)


def target_argv(target: Target, port: int, env: dict[str, str], naive_topic: str) -> list[str]:
    if target.kind == "bridge":
        if BEFORE_ENV in env:
            return [sys.executable, "-c", _RUN_FROM, "run", "--role", "ingest"]
        return bridge_argv("ingest")
    argv = [sys.executable, "-m", "bench.servers", target.kind, "--port", str(port)]
    if target.kind in ("naive", "required"):
        kafka = config_module.load(env).kafka
        argv += ["--bootstrap", kafka.bootstrap_servers, "--topic", naive_topic]
        argv += ["--linger-ms", str(kafka.linger_ms)]
    if target.kind == "required":
        argv += ["--signing-key", env["BRIDGE_WEBHOOK_SIGNING_KEY"]]
        argv += ["--url", env["BRIDGE_WEBHOOK_PUBLIC_URL"]]
    return [*argv, *target.extra_argv]


async def webhook_outcomes(port: int) -> dict[str, int]:
    """The bridge's ``bridge_webhook_requests_total`` counter by outcome, from ``/metrics``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{HOST}:{port}/metrics") as response,
    ):
        text = await response.text()
    found = re.findall(r'^bridge_webhook_requests_total\{outcome="([^"]+)"\} (\S+)$', text, re.M)
    return {outcome: int(float(value)) for outcome, value in found}


def bridge_targets(targets: Sequence[Target]) -> list[Target]:
    return [t for t in targets if t.kind == "bridge"]


async def main(args: argparse.Namespace) -> int:
    logs.configure(fmt="console", level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    script = work / "webhooks.lua"
    bridge_path = "/webhooks/bird"
    several: dict[str, str] = {}
    if args.workspaces:
        file, last = write_workspaces(work, args.workspaces)
        bridge_path = f"/webhooks/bird/{last}"
        several = {"BRIDGE_WORKSPACES_FILE": str(file)}
        url = f"{PUBLIC_URL}/{last}"
        script.write_text(lua_script(args.bodies, workspace_key(args.workspaces - 1), url))
    else:
        script.write_text(lua_script(args.bodies))
    targets = [*MAIN, *(t for name in args.compare for t in VARIANTS[name])]
    for n, folder in enumerate(args.before):
        before = Target(
            before_name(n),
            "(a0) bridge before" if n == 0 else f"(a{n}) bridge in {folder}",
            "bridge",
            # On the same loop as (a), whatever that revision's default.
            (*MAIN[0].env, (BEFORE_ENV, str(folder.resolve()))),
        )
        targets.insert(1 + n, before)
    broker, settings = bench_broker(args.broker, work)
    broker.start()
    if args.tracing:
        try:
            return await tracing_cost(args, broker, settings, work)
        finally:
            broker.stop()
    runs: dict[str, list[Measured]] = {t.name: [] for t in targets}
    outcomes: dict[str, dict[str, int]] = {}
    rss: dict[str, float] = {}
    topics: dict[str, tuple[int, set[str]]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        suffix = uuid.uuid4().hex[:8]
        env = bridge_env(broker.bootstrap, free_port(), suffix, settings, **dict(args.bridge_env))
        if several:
            del env["BRIDGE_WEBHOOK_SIGNING_KEY"]
            env.update(several)
        naive_topic = f"naive-{suffix}"
        await ensure_topics(config_module.load(env).kafka, [naive_topic])
        async with contextlib.AsyncExitStack() as stack:
            servers: dict[str, Child] = {}
            for target in targets:
                port = free_port()
                envs[target.name] = target_env = {
                    **env,
                    "BRIDGE_HTTP_PORT": str(port),
                    "BRIDGE_TOPIC_EVENTS": f"events-{suffix}-{target.name}",
                    **dict(target.env),
                }
                argv = target_argv(target, port, target_env, naive_topic)
                child = Child(target.name, argv, port=port, env=target_env, log_dir=work)
                servers[target.name] = await stack.enter_async_context(child)
            # Interleaved (a, b, c, c, b, a, a, b, c, ...): a noisy minute hits every target
            # alike, and no target always runs right after the same other one (a target
            # measured after another one ran measured up to 1.3x cheaper, its code unchanged).
            for round_ in range(args.runs):
                for target in targets if round_ % 2 == 0 else targets[::-1]:
                    path = bridge_path if target.kind == "bridge" else "/webhooks/bird"
                    runs[target.name].append(
                        await measure(servers[target.name], script, args, path=path)
                    )
            if args.profile is not None:  # an extra run, left out of the figures
                profiled = args.profile_target
                path = bridge_path if profiled.startswith("bridge") else "/webhooks/bird"
                await measure(servers[profiled], script, args, args.profile, path)
            await asyncio.sleep(1)  # requests cut off when wrk stopped still finish
            for target in bridge_targets(targets):
                if dict(target.env).get("BRIDGE_HTTP_WORKERS", "1") == "1":
                    outcomes[target.name] = await webhook_outcomes(servers[target.name].port)
            rss = {name: server.peak_rss_mb() for name, server in servers.items()}
        for target in bridge_targets(targets):
            topics[target.name] = await read_event_ids(
                broker.bootstrap, envs[target.name]["BRIDGE_TOPIC_EVENTS"], set()
            )
    finally:
        broker.stop()
    print(banner("Ingest benchmark", "bench.ingest"))
    kafka = config_module.load(env).kafka
    print(
        f"broker: {BROKERS[args.broker]}; idempotent producer "
        f"{'on' if kafka.enable_idempotence else 'off'}, {kafka.topic_partitions} partitions"
    )
    print(
        f"load: wrk {args.threads} threads, {args.connections} connections, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per run, {args.runs} runs "
        f"per target interleaved, {args.bodies} signed bodies cycled with distinct request ids"
    )
    print("figures: median of the runs (min-max); CPU of all the server's processes")
    if args.workspaces:
        print(f"bridge: {args.workspaces} workspaces, webhooks to the last one's path")
    print(f"\n{report(targets, runs, rss)}\n")
    checks = ingest_checks(runs, rss["bridge"])
    if "workers" in args.compare:
        print(f"{workers_report(runs)}\n")
    if "uvloop" in args.compare:
        print(f"{uvloop_report(runs)}\n")
    if "required" in args.compare:
        print(f"{required_report(runs)}\n")
    if "rdkafka" in args.compare:
        print(f"{rdkafka_report(runs)}\n")
    for n, folder in enumerate(args.before):
        print(f"{before_report(runs, folder, before_name(n))}\n")
    for target in bridge_targets(targets):
        records, ids = topics[target.name]
        topic = envs[target.name]["BRIDGE_TOPIC_EVENTS"]
        counted = sum(m.result.ok + m.warmup.ok for m in runs[target.name])
        if target.name in outcomes:
            published = outcomes[target.name].get("published", 0)
            other = {k: v for k, v in outcomes[target.name].items() if k != "published" and v}
            checks.append(
                (
                    f"topic {topic} holds {records} records with {len(ids)} distinct request "
                    f"ids; the bridge answered 204 {published} times (its metric, warm-ups "
                    f"included; other outcomes: {other or 'none'}; wrk counted {counted}: "
                    "requests in flight when a wrk run stops are answered but not counted)",
                    records == len(ids) == published and not other,
                )
            )
        else:  # several workers: each has its own metrics; wrk's count is the floor
            checks.append(
                (
                    f"topic {topic} holds {records} records with {len(ids)} distinct request "
                    f"ids; wrk counted {counted} 204s (requests in flight when a wrk run "
                    f"stops are answered but not counted: at most {2 * args.connections} "
                    "per run)",
                    records == len(ids)
                    and counted <= records <= counted + 2 * args.connections * args.runs,
                )
            )
    for text, ok in checks:
        print(f"{verdict(ok)}  {text}")
    if args.profile is not None:
        print(f"\npy-spy profile of {args.profile_target} during an extra run ({args.profile}):")
        print(profile_summary(args.profile))
    print(f"\nlogs: {work}")
    return 0 if all(ok for _, ok in checks) else 1


TRACING = {
    "plain": "bridge, no traceparent (same bytes)",
    "propagate": "bridge, traceparent (propagation only)",
    "export": "bridge, traceparent + OTLP export",
}


async def tracing_cost(
    args: argparse.Namespace,
    broker: EmbeddedBroker | KafkaCluster,
    settings: dict[str, str],
    work: Path,
) -> int:
    """The bridge three ways (``TRACING``), ``args.rounds`` rounds, each round in another
    order; a fresh process per run, one topic for all. Compares medians."""
    plain, traced = work / "webhooks-padded.lua", work / "webhooks-traced.lua"
    plain.write_text(lua_script(args.bodies, padded=True))
    traced.write_text(lua_script(args.bodies, traced=True))
    sink = OtlpSink()
    await sink.start()
    suffix = uuid.uuid4().hex[:8]
    runs: dict[str, list[Measured]] = {name: [] for name in TRACING}
    peak_rss: dict[str, float] = dict.fromkeys(TRACING, 0.0)
    published = 0
    other: Counter[str] = Counter()
    order = list(TRACING)
    try:
        for round_ in range(args.rounds):
            for name in order[round_ % 3 :] + order[: round_ % 3]:
                port = free_port()
                env = bridge_env(broker.bootstrap, port, suffix, settings)
                # No OTEL_* of the caller's (--bridge-env may set some): only the export
                # runs export, to the receiver.
                env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
                env.update(dict(args.bridge_env))
                if name == "export":
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
                script = plain if name == "plain" else traced
                async with Child(
                    f"{name}-{round_}", bridge_argv("ingest"), port=port, env=env, log_dir=work
                ) as server:
                    runs[name].append(await measure(server, script, args))
                    peak_rss[name] = max(peak_rss[name], server.peak_rss_mb())
                    await asyncio.sleep(1)  # requests cut off when wrk stopped still finish
                    outcomes = await webhook_outcomes(port)
                published += outcomes.pop("published", 0)
                other.update({k: v for k, v in outcomes.items() if v})
        records, ids = await read_event_ids(broker.bootstrap, env["BRIDGE_TOPIC_EVENTS"], set())
    finally:
        await sink.stop()
    print(banner("Ingest benchmark: the cost of tracing", "bench.ingest"))
    print(f"broker: {BROKERS[args.broker]}")
    print(
        f"load: wrk {args.threads} threads, {args.connections} connections, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per run, {args.rounds} "
        f"rounds of the three, each run a fresh `bridge run --role ingest`"
    )
    rows = []
    medians: dict[str, float] = {}
    for name, label in TRACING.items():
        rates = [m.result.rps for m in runs[name]]
        medians[name] = statistics.median(rates)
        cpus = [1e6 * m.cpu_s / m.result.requests for m in runs[name]]
        p99 = statistics.median(m.result.p99_us / 1000 for m in runs[name])
        rows.append(
            [
                label,
                f"{medians[name]:,.0f}",
                " ".join(f"{r:,.0f}" for r in rates),
                f"{p99:.2f}",
                f"{statistics.median(cpus):.0f}",
                " ".join(f"{c:.0f}" for c in cpus),
                f"{peak_rss[name]:.1f}",
            ]
        )
    headers = [
        "bridge",
        "median req/s",
        "each run",
        "p99 ms",
        "CPU us/req",
        "each run",
        "peak RSS MB",
    ]
    print(f"\n{table(headers, rows)}\n")
    propagate = medians["propagate"] / medians["plain"]
    export = medians["export"] / medians["plain"]
    exported = sum(m.result.ok + m.warmup.ok for m in runs["export"])
    print(f"propagation only: {100 * (1 - propagate):+.1f} % throughput cost vs no traceparent")
    print(f"OTLP export:      {100 * (1 - export):+.1f} % throughput cost vs no traceparent")
    print(
        f"OTLP receiver: {sink.requests} requests, {sink.bytes / 1e6:.1f} MB, {sink.spans} "
        f"spans, {len(sink.trace_ids)} trace ids (wrk counted {exported} 2xx in the export runs)"
    )
    checks = [
        (
            f"propagation only costs <= 3 % throughput ({100 * (1 - propagate):.1f} %)",
            propagate >= 0.97,
        ),
        (
            f"topic holds {records} records with {len(ids)} distinct request ids; the bridge "
            f"answered 204 {published} times (other outcomes: {dict(other) or 'none'})",
            records == len(ids) == published and not other,
        ),
    ]
    for text, ok in checks:
        print(f"{verdict(ok)}  {text}")
    print(f"\nlogs: {work}")
    return 0 if all(ok for _, ok in checks) else 1


# The targets (benchmarks, not timed tests).
CPU_PER_REQUEST_VS_NAIVE = 1.5
THROUGHPUT_VS_BARE = 0.4
P99_MS = 25.0
RSS_MB = 120.0


def ingest_checks(runs: dict[str, list[Measured]], bridge_rss: float) -> list[tuple[str, bool]]:
    bridge, bare, naive = runs["bridge"], runs["bare"], runs["naive"]
    cpu = [b.cpu_us_per_request / n.cpu_us_per_request for b, n in zip(bridge, naive, strict=True)]
    rate = [b.result.rps / r.result.rps for b, r in zip(bridge, bare, strict=True)]
    p99 = [m.result.p99_us / 1000 for m in bridge]
    return [
        (
            f"bridge CPU per webhook <= {CPU_PER_REQUEST_VS_NAIVE}x the naive handler's "
            f"({spread(cpu, '.2f')}x)",
            statistics.median(cpu) <= CPU_PER_REQUEST_VS_NAIVE,
        ),
        (
            f"bridge throughput >= {THROUGHPUT_VS_BARE}x bare ({spread(rate, '.2f')}x)",
            statistics.median(rate) >= THROUGHPUT_VS_BARE,
        ),
        (
            f"bridge p99 < {P99_MS:g} ms ({spread(p99, '.1f')} ms)",
            statistics.median(p99) < P99_MS,
        ),
        (f"bridge peak RSS < {RSS_MB:g} MB ({bridge_rss:.1f} MB)", bridge_rss < RSS_MB),
    ]


def spread(values: Sequence[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``."""
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def report(
    targets: Sequence[Target], runs: dict[str, list[Measured]], rss: dict[str, float]
) -> str:
    rows = []
    for target in targets:
        ms = runs[target.name]
        rows.append(
            [
                target.label,
                spread([m.result.rps for m in ms], ",.0f"),
                spread([m.result.p50_us / 1000 for m in ms], ".1f"),
                spread([m.result.p99_us / 1000 for m in ms], ".1f"),
                spread([100 * m.cpu_share for m in ms], ".0f"),
                spread([m.cpu_us_per_request for m in ms], ".0f"),
                f"{rss[target.name]:.1f}",
                f"{sum(m.result.ok for m in ms):,}",
                f"{sum(m.result.non2xx for m in ms):,}",
                f"{sum(m.result.socket_errors + m.result.timeouts for m in ms):,}",
            ]
        )
    headers = [
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "CPU %",
        "CPU us/req",
        "peak RSS MB",
        "2xx",
        "non-2xx",
        "errors",
    ]
    return table(headers, rows)


def ratio_row(label: str, ours: list[Measured], base: list[Measured]) -> list[str]:
    rate = [a.result.rps / b.result.rps for a, b in zip(ours, base, strict=True)]
    cpu = [a.cpu_us_per_request / b.cpu_us_per_request for a, b in zip(ours, base, strict=True)]
    return [label, spread(rate, ".2f"), spread(cpu, ".2f")]


def workers_report(runs: dict[str, list[Measured]]) -> str:
    rows = [
        ratio_row("bridge, 2 workers / 1 worker", runs["bridge-2w"], runs["bridge"]),
        ratio_row("bridge, 2 workers / bare", runs["bridge-2w"], runs["bare"]),
    ]
    return "BRIDGE_HTTP_WORKERS (same runs):\n" + table(
        ["", "throughput ratio", "CPU per request ratio"], rows
    )


def uvloop_report(runs: dict[str, list[Measured]]) -> str:
    rows = [
        ratio_row("bridge, uvloop / asyncio", runs["bridge-uvloop"], runs["bridge"]),
        ratio_row("bare, uvloop / asyncio", runs["bare-uvloop"], runs["bare"]),
        ratio_row("bridge / bare, both uvloop", runs["bridge-uvloop"], runs["bare-uvloop"]),
    ]
    return "uvloop beside the default event loop (same runs):\n" + table(
        ["", "throughput ratio", "CPU per request ratio"], rows
    )


def required_report(runs: dict[str, list[Measured]]) -> str:
    rows = [
        ratio_row("required work / naive", runs["required"], runs["naive"]),
        ratio_row("bridge / required work", runs["bridge"], runs["required"]),
        ratio_row("required work / bare", runs["required"], runs["bare"]),
    ]
    return (
        "The work every webhook requires (verify, normalize, keyed publish), nothing else "
        "(same runs):\n" + table(["", "throughput ratio", "CPU per request ratio"], rows)
    )


def rdkafka_report(runs: dict[str, list[Measured]]) -> str:
    """Both baselines on librdkafka beside aiokafka; the required work on librdkafka
    against the issue's references (the naive handler on aiokafka, bare)."""
    rows = [ratio_row("naive: librdkafka / aiokafka", runs["naive-rdkafka"], runs["naive"])]
    if "required" in runs:
        rows.append(
            ratio_row("required: librdkafka / aiokafka", runs["required-rdkafka"], runs["required"])
        )
    rows += [
        ratio_row("required (librdkafka) / naive", runs["required-rdkafka"], runs["naive"]),
        ratio_row("required (librdkafka) / bare", runs["required-rdkafka"], runs["bare"]),
        ratio_row("bridge / required (librdkafka)", runs["bridge"], runs["required-rdkafka"]),
    ]
    return (
        "Another Kafka client: librdkafka (confluent-kafka) for aiokafka, same runs "
        "(naive = (c), on aiokafka):\n"
        + table(["", "throughput ratio", "CPU per request ratio"], rows)
    )


def before_name(n: int) -> str:
    """The target name of the ``n``-th ``--before`` folder."""
    return "bridge-before" if n == 0 else f"bridge-before-{n}"


def before_report(runs: dict[str, list[Measured]], folder: Path, name: str) -> str:
    rows = [
        ratio_row("bridge / bridge before", runs["bridge"], runs[name]),
        ratio_row("bridge before / naive", runs[name], runs["naive"]),
        ratio_row("bridge / naive", runs["bridge"], runs["naive"]),
    ]
    return f"This bridge beside the one in {folder} (same runs):\n" + table(
        ["", "throughput ratio", "CPU per request ratio"], rows
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--broker",
        choices=sorted(BROKERS),
        default="embedded",
        help="embedded: Tansu, as `bridge dev`; kafka: one Apache Kafka node "
        "(Java and Maven, fetched as for the tests)",
    )
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per target")
    parser.add_argument(
        "--compare",
        choices=sorted(VARIANTS),
        action="append",
        default=[],
        help="also run these variants, interleaved with the others: workers (the bridge "
        "with BRIDGE_HTTP_WORKERS=2), uvloop (bridge and bare on uvloop), required (a "
        "handler doing only the work every webhook requires: verify, normalize, keyed "
        "send_and_wait), rdkafka (the naive and required handlers on librdkafka, "
        "confluent-kafka); repeatable",
    )
    parser.add_argument(
        "--before",
        type=Path,
        action="append",
        default=[],
        help="also run, interleaved, the bridge package found in this folder (another "
        "revision's, e.g. `git archive REV bridge | tar -x -C FOLDER`): before/after ratios "
        "from the same runs; repeatable",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--bodies", type=int, default=500, help="distinct signed bodies")
    parser.add_argument(
        "--workspaces",
        type=int,
        default=0,
        help="serve this many workspaces (BRIDGE_WORKSPACES_FILE) and post to the last "
        "one's path (default: one workspace, the single-workspace settings)",
    )
    add_bridge_env_option(
        parser,
        "extra setting for the bridge, e.g. BRIDGE_KAFKA_LINGER_MS=0 (the naive "
        "handler follows BRIDGE_KAFKA_LINGER_MS); repeatable",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="measure tracing instead: the bridge without traceparent, with it (propagation "
        "only) and with OTLP export to a local receiver, side by side",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --tracing: rounds of the three runs"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the bridge's measured run with py-spy (on PATH) into this file "
        "(collapsed stacks) and print the top frames; the profiler costs CPU, so use a "
        "separate run for the figures",
    )
    parser.add_argument(
        "--profile-target",
        default="bridge",
        help="the target --profile records (its name: bridge, bare, naive, required, ...; "
        "it must be one of the run's targets)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk not found: apt-get install -y wrk")
    names = {t.name for t in MAIN} | {t.name for v in VARIANTS.values() for t in v}
    if args.profile_target not in names:
        parser.error(f"--profile-target: one of {', '.join(sorted(names))}")
    if args.profile is not None and shutil.which("py-spy") is None:
        parser.error("--profile needs py-spy on PATH: pip install py-spy")
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
