"""Apache Kafka for the tests: fetch it with Maven once, then run KRaft nodes on loopback.

``kafka_classpath()`` resolves the pinned broker (tests/kafka/pom.xml) into the local Maven
repository and caches the classpath in ``.cache/kafka/`` (keyed by the POM's hash), so only
the first run on a machine pays for the download. ``KafkaCluster`` formats KRaft storage
and starts one combined broker/controller process per node on free loopback ports, with a
bounded heap; ``start()`` returns once every node is in the cluster's metadata.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bridge.kafka.embedded import EmbeddedBroker, answers_api_versions, free_port

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "tests" / "kafka" / "pom.xml"
LOG4J = ROOT / "tests" / "kafka" / "log4j2.xml"
CACHE = ROOT / ".cache" / "kafka"
KAFKA_VERSION = "4.4.0"
# One JVM per node: three nodes, the bridge processes and the tests share 2 cores.
HEAP = "-Xmx384m"
JVM_OPTIONS = (HEAP, "-Xms64m", "-XX:+UseSerialGC", "-Xss512k", "-Djava.awt.headless=true")


class KafkaUnavailable(RuntimeError):
    """Java or the broker's jars are missing; the message says which, in one line."""


def kafka_classpath(*, fetch: bool = True) -> str:
    """The broker's classpath, from the cache or (once) from Maven."""
    if shutil.which("java") is None:
        raise KafkaUnavailable("Java is missing (no `java` on PATH)")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    cached = CACHE / f"classpath-{digest}.txt"
    if cached.exists():
        classpath = cached.read_text().strip()
        if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            return classpath
    if not fetch:
        raise KafkaUnavailable("Apache Kafka is not fetched yet")
    if shutil.which("mvn") is None:
        raise KafkaUnavailable("Maven is missing (no `mvn` on PATH) to fetch Apache Kafka")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={partial}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not partial.exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise KafkaUnavailable(f"fetching Apache Kafka with Maven failed: {' '.join(tail)}")
    partial.replace(cached)
    return cached.read_text().strip()


def java_available() -> bool:
    return shutil.which("java") is not None


def server_settings(nodes: int) -> dict[str, str]:
    """What differs from Kafka's own defaults, for one node or a cluster of three."""
    min_isr = str(min(2, nodes))
    return {
        "auto.create.topics.enable": "false",  # the bridge creates its topics, as in production
        "min.insync.replicas": min_isr,
        "default.replication.factor": str(nodes),
        "offsets.topic.replication.factor": str(nodes),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(nodes),
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": str(nodes),
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        # The cleaner looks for dirty logs every second, so a test sees compaction happen.
        "log.cleaner.backoff.ms": "1000",
        "log.segment.delete.delay.ms": "1000",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
    }


def _cluster_id() -> str:
    """A random cluster id that does not start with "-" (the storage tool would read it as an
    option; Kafka's own ``Uuid.randomUuid()`` skips those too)."""
    while True:
        found = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not found.startswith("-"):
            return found


def _in_thread(coroutine: Any) -> Any:
    """Run a coroutine on its own loop in a thread (fixtures may be set up inside a loop)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Extra listeners (name -> port), besides PLAINTEXT (inter-broker, the fixtures' admin).
    listener_ports: dict[str, int] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class KafkaCluster:
    """``nodes`` combined broker/controller processes of Apache Kafka on loopback."""

    def __init__(
        self,
        directory: Path,
        nodes: int = 1,
        *,
        settings: dict[str, str] | None = None,
        classpath: str | None = None,
        listeners: dict[str, str] | None = None,
        jvm_options: Sequence[str] = (),
        format_args: Sequence[str] = (),
    ) -> None:
        """``listeners``: extra listener names and their security protocols (e.g. ``{"MTLS":
        "SSL"}``), each on its own free port, configured through ``settings``
        (``listener.name.mtls.ssl.client.auth`` ...); ``jvm_options`` go to every JVM (system
        properties), ``format_args`` to the storage tool (``--add-scram ...``)."""
        self.directory = directory
        self.classpath = classpath or kafka_classpath()
        self.settings = {**server_settings(nodes), **(settings or {})}
        self.listeners = dict(listeners or {})
        self.jvm_options = tuple(jvm_options)
        self.format_args = tuple(format_args)
        self.nodes = [
            KafkaNode(
                i,
                free_port(),
                free_port(),
                directory / f"node-{i}",
                listener_ports={name: free_port() for name in self.listeners},
            )
            for i in range(1, nodes + 1)
        ]
        self.cluster_id = _cluster_id()
        self.started_in_s: float | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def listener_bootstrap(self, name: str) -> str:
        """The bootstrap servers of the extra listener ``name``."""
        return ",".join(f"127.0.0.1:{node.listener_ports[name]}" for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        return len(self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def _properties(self, node: KafkaNode) -> Path:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        extra = [f"{name}://127.0.0.1:{port}" for name, port in node.listener_ports.items()]
        advertised = ",".join([f"PLAINTEXT://127.0.0.1:{node.port}", *extra])
        protocols = ",".join(
            ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
            + [f"{name}:{protocol}" for name, protocol in self.listeners.items()]
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{advertised},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "log.dirs": str(node.directory / "data"),
            **self.settings,
        }
        path = node.directory / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            *JVM_OPTIONS,
            *self.jvm_options,
            f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={self.directory}",
            "-cp",
            self.classpath,
            main,
            *args,
        ]

    def format(self) -> None:
        """Format every node's KRaft storage, all in parallel (one JVM each)."""
        formats = []
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            properties = self._properties(node)
            argv = self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(properties),
                *self.format_args,
            )
            formats.append(
                (node, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            )
        for node, process in formats:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise RuntimeError(
                    f"formatting node {node.node_id} failed: {output.decode()[-2000:]}"
                )

    def start(self, timeout: float = 120.0) -> None:
        began = time.monotonic()
        self.format()
        for node in self.nodes:
            self._launch(node)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began

    def _launch(self, node: KafkaNode) -> None:
        argv = self._java("kafka.Kafka", str(node.directory / "server.properties"))
        with open(node.log_path, "ab") as log:  # the child keeps its own descriptor
            node.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Every running node answers and the metadata lists all running nodes."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.process is not None]
        for node in running:
            while not answers_api_versions("127.0.0.1", node.port):
                assert node.process is not None
                if node.process.poll() is not None:
                    tail = node.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"kafka node {node.node_id} exited: {tail}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kafka node {node.node_id} did not answer in {timeout}s")
                time.sleep(0.1)
        wanted = {node.node_id for node in running}
        while True:
            with contextlib.suppress(Exception):  # not ready yet: no controller, no metadata
                if set(_in_thread(self._broker_ids())) >= wanted:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"kafka nodes {sorted(wanted)} not all in metadata in {timeout}s"
                )
            time.sleep(0.2)

    async def _broker_ids(self) -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
        return [int(broker["node_id"]) for broker in cluster["brokers"]]

    async def leader_of(self, topic: str, partition: int = 0, *, wait_s: float = 15.0) -> int:
        """The node id currently leading ``topic``/``partition``. A topic just created may
        not be in every node's metadata yet (it propagates): asked again until ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            await admin.start()
            try:
                described = await admin.describe_topics([topic])
            finally:
                await admin.close()
            for item in described[0]["partitions"]:
                if item["partition"] == partition and int(item["leader"]) >= 0:
                    return int(item["leader"])
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}/{partition} not found")
            await asyncio.sleep(0.2)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no clean shutdown, no leadership handover."""
        node = self.node(node_id)
        process, node.process = node.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown that hands leadership over), then SIGKILL."""
        node = self.node(node_id)
        process, node.process = node.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Start a stopped or killed node again on its own storage and ports."""
        node = self.node(node_id)
        if node.running:
            raise RuntimeError(f"node {node_id} is still running")
        self._launch(node)
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Stop all nodes: SIGTERM to each at once, then SIGKILL what is left."""
        running = [node for node in self.nodes if node.running]
        for node in running:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in running:
            assert node.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.1, deadline - time.monotonic()))
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait()
            node.process = None

    def rss_kib(self) -> dict[int, int]:
        """Resident memory of each running node's JVM, from /proc."""
        sizes = {}
        for node in self.nodes:
            if node.running and node.process is not None:
                status = Path(f"/proc/{node.process.pid}/status").read_text()
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        sizes[node.node_id] = int(line.split()[1])
        return sizes

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# What a test gets from the broker fixtures: Apache Kafka or the embedded broker.
Broker = KafkaCluster | EmbeddedBroker
