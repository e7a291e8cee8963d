"""Ledger-scale benchmark: how long a commands replica takes to start, and how much memory
it holds, with a ledger of N finished commands inside the idempotency window.

One invocation starts a broker (one node of Apache Kafka with the production defaults, or
``--broker embedded``) and the Bird simulator. For each N it makes fresh topics and writes
N final ledger entries straight to the ledger topic (kcat when it is on the PATH, else an
aiokafka producer with big batches): creates of about 1.2 KB each, as the bridge writes
them, started over the last six days (all inside the default 7-day window). Then, for each
replica count, it starts that many ``bridge run --role commands`` processes at once and
measures for each: the time from its start to ``GET /readyz`` 200, its peak resident set
(``VmHWM``) and its resident set 3 s after every replica is ready (``VmRSS``). Once ready
it resends a few of the finished commands under another key (so on another partition) and
checks that each is answered with its stored final result, byte for byte, and that Bird
saw no request.

Each N starts one replica on a ledger without a snapshot first: it reads the whole ledger,
then writes a snapshot of its index (``BRIDGE_LEDGER_SNAPSHOT_RECORDS``; the bench waits
for the manifest and reports the time and size). It is stopped, and the replica counts of
``--replicas`` then start from that snapshot, as every later start of a commands replica
does. The targets are judged on those starts; the first is shown beside them.

    python -m bench.ledger [--broker kafka|embedded] [--counts 100000,1000000]
                           [--replicas 1,2] [--probes 5]

Targets at 1,000,000 entries: ready in under 10 s (starting from a snapshot), and under
250 MB per replica (every start, the snapshot's writing included).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    EMBEDDED_BENCH_SETTINGS,
    KAFKA_BENCH_SETTINGS,
    Child,
    Message,
    banner,
    bench_broker,
    bridge_argv,
    bridge_env,
    rss_mb,
    table,
    tail_topic,
    verdict,
)
from birdsim.server import SimulatorServer
from birdsim.settings import DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY, SimulatorSettings
from bridge import config as config_module
from bridge import logs
from bridge.commands.ledger_image import Manifest, decode_manifest
from bridge.commands.ledger_snapshots import MANIFESTS, ensure_snapshots_topic
from bridge.commands.ledger_state import Entry
from bridge.commands.parse import parse_command
from bridge.commands.results import result_value
from bridge.events import rfc3339
from bridge.kafka.clients import ensure_topics
from bridge.kafka.embedded import EmbeddedBroker, free_port
from tests.kafka_cluster import KAFKA_VERSION, KafkaCluster

TARGET_N = 1_000_000
TARGET_READY_S = 10.0
TARGET_RSS_MB = 250.0
BROKERS = {
    "kafka": f"Apache Kafka {KAFKA_VERSION} (one KRaft node, tests/kafka_cluster.py)",
    "embedded": "the embedded broker (Tansu, memory only)",
}
MARK = "@@command@@"  # stands for the commandId in the record template


def create_command(command_id: str) -> dict[str, object]:
    return {
        "commandId": command_id,
        "action": "create",
        "connector": {
            "connectorTemplateRef": "sms-messagebird:1",
            "name": f"Support SMS {command_id}",
            "arguments": {"phoneNumberId": "2f3e4d5c-0000-4000-8000-000000000001"},
        },
    }


def final_entry(command_id: str, started: datetime, fingerprint: str) -> bytes:
    """The final ledger record of a create that succeeded, as the bridge writes it."""
    at = rfc3339(started)
    channel_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"channel/{command_id}"))
    connector = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"connector/{command_id}")),
        "name": f"Support SMS {command_id}",
        "connectorTemplateRef": "sms-messagebird:1",
        "arguments": {"phoneNumberId": "2f3e4d5c-0000-4000-8000-000000000001"},
        "status": "active",
        "createdAt": at,
        "updatedAt": at,
        "channel": {"channelId": channel_id},
    }
    channel = {
        "id": channel_id,
        "status": "active",
        "platform": "sms-messagebird",
        "identifier": "+31600000000",
        "name": f"Support SMS {command_id}",
        "createdAt": at,
        "updatedAt": at,
    }
    result = result_value(
        command_id=command_id,
        action="create",
        status="succeeded",
        now=started + timedelta(seconds=2),
        connector=connector,
        channel=channel,
    )
    entry = Entry(command_id, fingerprint, "create", "started", at)
    return entry.accepted(connector, None).final(result).to_json()


def probe_ids(n: int, probes: int) -> dict[int, str]:
    """Which of the N entries are resent after the start (spread over the whole range)."""
    return {i * n // probes + n // (2 * probes): f"cmd-{i:08d}-probe" for i in range(probes)}


def ledger_lines(n: int, probes: dict[int, str], now: datetime) -> bytes:
    """``key<TAB>value`` lines of N final entries. Most come from one template (made by the
    real code, its ids and times substituted: fast); the probes are made one by one, with
    the fingerprint of the command the bench resends."""
    template = final_entry(MARK, now, "f" * 64).decode()
    stamp = rfc3339(now)
    parts = template.replace(stamp, "\x02").split(MARK)
    lines: list[bytes] = []
    span = 6 * 24 * 3600 / max(n, 1)
    for i in range(n):
        started = now - timedelta(seconds=(n - i) * span)
        command_id = probes.get(i)
        if command_id is not None:
            fingerprint = parse_command(
                orjson.dumps(create_command(command_id)),
                default_workspace_id=DEFAULT_WORKSPACE_ID,
            ).fingerprint
            value = final_entry(command_id, started, fingerprint)
        else:
            command_id = f"cmd-{i:08d}"
            value = command_id.join(parts).replace("\x02", rfc3339(started)).encode()
        lines.append(command_id.encode() + b"\t" + value + b"\n")
    return b"".join(lines)


async def fill(bootstrap: str, topic: str, lines: bytes, idempotent: bool) -> str:
    """Write the lines to ``topic`` (key = commandId, Kafka's default partitioner)."""
    if shutil.which("kcat"):
        argv = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-z", "none"]
        for option in (
            "topic.partitioner=murmur2_random",  # Kafka's default (the Java client's)
            "linger.ms=50",
            "batch.size=1000000",
            "queue.buffering.max.kbytes=1000000",
            "topic.request.required.acks=-1",
            f"enable.idempotence={str(idempotent).lower()}",
        ):
            argv += ["-X", option]
        done = await asyncio.to_thread(subprocess.run, argv, input=lines, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"kcat failed: {done.stderr.decode(errors='replace')[-500:]}")
        return "kcat"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=50, max_batch_size=1_000_000
    )
    await producer.start()
    try:
        pending = []
        for line in lines.splitlines():
            key, _, value = line.partition(b"\t")
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return "aiokafka"


@dataclass
class Replica:
    ready_s: float
    cpu_s: float
    peak_rss_mb: float
    rss_mb: float


@dataclass
class Run:
    entries: int
    start: str  # what the replicas start from: "whole ledger" or "snapshot"
    replicas: list[Replica]
    fill_s: float
    fill_tool: str
    probes_ok: int = 0
    probes: int = 0
    bird_requests: int = 0
    problems: list[str] = field(default_factory=list)
    snapshot: str = ""  # the snapshot written after a whole-ledger start: seconds, size


async def latest_manifest(bootstrap: str, topic: str) -> Manifest | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, MANIFESTS)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return None
        consumer.seek(tp, end - 1)
        async with asyncio.timeout(30):
            while True:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if record.offset == end - 1 and record.value:
                        return decode_manifest(record.value)
    finally:
        await consumer.stop()


async def wait_for_snapshot(bootstrap: str, topic: str, timeout: float) -> Manifest | None:
    """The first snapshot's manifest, once written (None after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        manifest = await latest_manifest(bootstrap, topic)
        if manifest is not None:
            return manifest
        await asyncio.sleep(0.5)
    return None


async def start_replicas(
    count: int, env: dict[str, str], work: Path, label: str
) -> tuple[list[Child], list[tuple[float, float]]]:
    children = []
    for i in range(count):
        port = free_port()
        child_env = {**env, "BRIDGE_HTTP_PORT": str(port)}
        name = f"bridge-{label}-r{i + 1}"
        children.append(
            Child(name, bridge_argv("commands"), port=port, env=child_env, log_dir=work)
        )

    async def timed(child: Child) -> tuple[float, float]:
        """Seconds to ready, and CPU seconds the process used until then."""
        began = time.monotonic()
        await child.start(timeout=300)
        return time.monotonic() - began, child.cpu_seconds()

    return children, list(await asyncio.gather(*(timed(c) for c in children)))


async def probe(
    bootstrap: str, env: dict[str, str], stored: dict[str, bytes], sim: SimulatorServer
) -> tuple[int, int, list[str]]:
    """Resend each stored command under another key; count those answered with the stored
    bytes (and no Bird request)."""
    seen: dict[str, bytes] = {}
    arrived = asyncio.Event()

    def on_result(record: Message) -> None:
        event = orjson.loads(record.value)
        if event.get("subject") in stored:
            seen[event["subject"]] = record.value
            arrived.set()

    sim.simulator.journal.clear()
    problems: list[str] = []
    async with tail_topic(bootstrap, env["BRIDGE_TOPIC_RESULTS"], on_result):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for command_id in stored:
                value = orjson.dumps(create_command(command_id))
                await producer.send_and_wait(
                    env["BRIDGE_TOPIC_COMMANDS"], value, key=f"other-key-{command_id}".encode()
                )
        finally:
            await producer.stop()
        try:
            async with asyncio.timeout(60):
                while set(seen) != set(stored):
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError:
            problems.append(f"no result for {sorted(set(stored) - set(seen))}")
    ok = sum(seen.get(c) == v for c, v in stored.items())
    for command_id, value in seen.items():
        if value != stored[command_id]:
            problems.append(f"{command_id}: the result differs from the stored one")
    return ok, len(sim.simulator.journal.query({})), problems


async def run_size(
    broker: EmbeddedBroker | KafkaCluster,
    sim: SimulatorServer,
    n: int,
    replica_counts: list[int],
    args: argparse.Namespace,
    work: Path,
) -> list[Run]:
    settings = KAFKA_BENCH_SETTINGS if args.broker == "kafka" else EMBEDDED_BENCH_SETTINGS
    suffix = f"{n}-{uuid.uuid4().hex[:6]}"
    env = bridge_env(
        broker.bootstrap,
        0,
        suffix,
        settings,
        BRIDGE_BIRD_API_URL=sim.url,
        BRIDGE_BIRD_ACCESS_KEY=DEV_ACCESS_KEY,
        BRIDGE_BIRD_WORKSPACE_ID=DEFAULT_WORKSPACE_ID,
        # The default (100,000), or less for a smaller ledger: the first start writes one.
        BRIDGE_LEDGER_SNAPSHOT_RECORDS=str(min(100_000, max(1, n // 2))),
    )
    config = config_module.load(env)
    topics = config.topics
    await ensure_topics(config.kafka, [topics.ledger], compacted=[topics.ledger])
    await ensure_snapshots_topic(config)
    probes = probe_ids(n, args.probes)
    now = datetime.now(UTC)
    began = time.monotonic()
    lines = await asyncio.to_thread(ledger_lines, n, probes, now)
    tool = await fill(broker.bootstrap, topics.ledger, lines, config.kafka.enable_idempotence)
    fill_s = time.monotonic() - began
    stored: dict[str, bytes] = {}
    for line in lines.splitlines():
        key, _, value = line.partition(b"\t")
        if key.endswith(b"-probe"):
            stored[key.decode()] = orjson.dumps(orjson.loads(value)["finalResult"])
    del lines
    runs = []
    # The first start reads the whole ledger, then writes the first snapshot.
    plan = [("whole ledger", 1), *(("snapshot", count) for count in replica_counts)]
    for start, count in plan:
        # A fresh consumer group per run: every replica joins from nothing.
        label = f"{n}-{count}-{start.split()[0]}"
        run_env = {**env, "BRIDGE_KAFKA_CONSUMER_GROUP": f"bridge-{suffix}-{label}"}
        children, ready = await start_replicas(count, run_env, work, label)
        try:
            note = ""
            if start == "whole ledger":
                began = time.monotonic()
                manifest = await wait_for_snapshot(broker.bootstrap, topics.ledger_snapshots, 300)
                if manifest is None:
                    note = "no snapshot written within 300 s"
                else:
                    size = sum(chunk.size for chunk in manifest.chunks) / 1e6
                    note = (
                        f"snapshot of {manifest.commands:,} commands written "
                        f"{time.monotonic() - began:.1f} s after ready: {size:.0f} MB in "
                        f"{len(manifest.chunks)} records"
                    )
            await asyncio.sleep(3)
            replicas = [
                Replica(ready_s=r, cpu_s=cpu, peak_rss_mb=c.peak_rss_mb(), rss_mb=rss_mb(c.pid))
                for c, (r, cpu) in zip(children, ready, strict=True)
            ]
            run = Run(n, start, replicas, fill_s, tool, snapshot=note)
            if note.startswith("no snapshot"):
                run.problems.append(note)
            run.probes = len(stored)
            run.probes_ok, run.bird_requests, problems = await probe(
                broker.bootstrap, run_env, stored, sim
            )
            run.problems += problems
        finally:
            await asyncio.gather(*(c.stop() for c in children))
        runs.append(run)
    return runs


def report(runs: list[Run]) -> tuple[str, bool]:
    rows = []
    ok = True
    for run in runs:
        for i, replica in enumerate(run.replicas):
            judged = run.entries >= TARGET_N
            from_snapshot = run.start == "snapshot"
            fast = replica.ready_s < TARGET_READY_S
            small = replica.peak_rss_mb < TARGET_RSS_MB
            if judged:
                ok &= small and (fast or not from_snapshot)
            rows.append(
                [
                    f"{run.entries:,}",
                    run.start,
                    f"{len(run.replicas)} ({i + 1})",
                    f"{replica.ready_s:.1f}",
                    f"{replica.cpu_s:.1f}",
                    f"{replica.peak_rss_mb:.0f}",
                    f"{replica.rss_mb:.0f}",
                    verdict(fast) if judged and from_snapshot else "-",
                    verdict(small) if judged else "-",
                    f"{run.probes_ok}/{run.probes}",
                    str(run.bird_requests),
                ]
            )
        ok &= run.probes_ok == run.probes and run.bird_requests == 0 and not run.problems
    headers = [
        "entries",
        "start from",
        "replicas (which)",
        "ready s",
        "CPU s",
        "VmHWM MB",
        "VmRSS MB",
        f"ready < {TARGET_READY_S:g} s",
        f"RSS < {TARGET_RSS_MB:g} MB",
        "resends answered from the ledger",
        "Bird requests",
    ]
    return table(headers, rows), ok


async def main(args: argparse.Namespace) -> int:
    logs.configure(fmt="console", level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    broker, _ = bench_broker(args.broker, work)
    broker.start()
    runs: list[Run] = []
    try:
        async with SimulatorServer(SimulatorSettings()) as sim:
            for n in args.counts:
                runs += await run_size(broker, sim, n, args.replicas, args, work)
    finally:
        broker.stop()
    print(banner("Ledger-scale benchmark", "bench.ledger"))
    fills = ", ".join(f"{r.entries:,} in {r.fill_s:.0f} s" for r in runs if r.start != "snapshot")
    print(
        f"broker: {BROKERS[args.broker]}; ledger entries written with {runs[0].fill_tool} ({fills})"
    )
    print(
        "ready s: from the process start to GET /readyz 200 (the ledger loaded, the consumer "
        "group joined); CPU s: CPU time the replica used until then (less sensitive to a "
        "shared machine); VmHWM: peak resident set; VmRSS: 3 s after every replica is ready\n"
    )
    text, ok = report(runs)
    print(text)
    print()
    for run in runs:
        if run.snapshot:
            print(f"{run.entries:,} entries: {run.snapshot}")
    print()
    for run in runs:
        for problem in run.problems:
            print(f"FAIL  {run.entries:,} entries, {len(run.replicas)} replicas: {problem}")
    print(
        f"{verdict(ok)}  at {TARGET_N:,} entries every replica started from a snapshot ready "
        f"in under {TARGET_READY_S:g} s, every replica under {TARGET_RSS_MB:g} MB; every resend "
        "under another key answered from the ledger with no Bird request"
    )
    print(f"\nlogs: {work}")
    return 0 if ok else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=sorted(BROKERS), default="kafka")
    parser.add_argument(
        "--counts",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[100_000, 1_000_000],
        help="ledger entries, comma-separated (default 100000,1000000)",
    )
    parser.add_argument(
        "--replicas",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 2],
        help="replica counts to start at once, comma-separated (default 1,2)",
    )
    parser.add_argument("--probes", type=int, default=5, help="commands resent after the start")
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
