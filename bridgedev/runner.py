"""``bridge dev``: the whole system on this machine, loopback only, no setup.

Starts the embedded Kafka-protocol broker (memory only), the Bird API simulator, and the
bridge with both roles wired to both; registers the webhook subscriptions at the
simulator; prints where everything listens and what to type next. Ctrl-C stops it all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence

import structlog

from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    SimulatorSettings,
)
from bridge import config as config_module
from bridge import logs
from bridge.app import WEBHOOK_PATH, Bridge, serve
from bridge.bird.client import BirdClient
from bridge.config import Config
from bridge.errors import StartupError
from bridge.kafka.embedded import EMBEDDED_SETTINGS, EmbeddedBroker
from bridge.ports import port_problem
from bridge.subscriptions import ensure_subscriptions
from bridge.tracing import tracing_from_env

log = structlog.get_logger("bridge.dev")

HOST = "127.0.0.1"
DEV_SIGNING_KEY = "dev-signing-key"


def dev_environment(*, kafka_port: int, port: int, simulator_port: int) -> dict[str, str]:
    """The bridge's settings for the embedded broker and the local simulator."""
    return {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{kafka_port}",
        # The embedded broker answers "latest" offsets wrongly (docs/development.md).
        **EMBEDDED_SETTINGS,
        "BRIDGE_KAFKA_AUTO_OFFSET_RESET": "earliest",
        "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "BRIDGE_BIRD_API_URL": f"http://{HOST}:{simulator_port}",
        "BRIDGE_BIRD_ACCESS_KEY": DEV_ACCESS_KEY,
        "BRIDGE_BIRD_ORGANIZATION_ID": DEFAULT_ORGANIZATION_ID,
        "BRIDGE_BIRD_WORKSPACE_ID": DEFAULT_WORKSPACE_ID,
        "BRIDGE_WEBHOOK_SIGNING_KEY": DEV_SIGNING_KEY,
        "BRIDGE_WEBHOOK_PUBLIC_URL": f"http://{HOST}:{port}{WEBHOOK_PATH}",
        "BRIDGE_COMMANDS_FOLLOW_INTERVAL_S": "0.5",
        "BRIDGE_HTTP_HOST": HOST,
        "BRIDGE_HTTP_PORT": str(port),
        "BRIDGE_SHUTDOWN_TIMEOUT_S": "10",
        "BRIDGE_LOG_FORMAT": "console",
    }


def banner(config: Config, *, kafka_port: int, simulator_port: int) -> str:
    t = config.topics
    bootstrap = config.kafka.bootstrap_servers
    return f"""
Channel Bridge is running on this machine (loopback only; Ctrl-C stops everything).

  Kafka (embedded, memory only)  {bootstrap}
  Bird API simulator             http://{HOST}:{simulator_port}   (AccessKey {DEV_ACCESS_KEY})
  Bridge                         http://{HOST}:{config.http_port}
      webhooks                   {config.webhook.public_url}
      health / ready / metrics   /healthz  /readyz  /metrics

  Topics: {t.commands} -> [bridge] -> {t.results}
          Bird webhooks -> [bridge] -> {t.events}
          bad commands -> {t.dead_letter};  command ledger: {t.ledger}

Try it (in another terminal, from this folder):

  .venv/bin/bridge command create --name "My SMS channel"
      sends a create command, then prints its accepted / succeeded results and the
      channel.created / channel.updated events of the new channel as they arrive
  .venv/bin/bridge command list
  .venv/bin/bridge command delete --connector-id <id from the result>

  curl -s http://{HOST}:{config.http_port}/metrics | grep bridge_
  curl -s http://{HOST}:{simulator_port}/_simulator/deliveries      # webhook deliveries

With kcat (it needs librdkafka 2.3 or newer; see docs/development.md):

  kcat -b {bootstrap} -C -t {t.results} -o beginning -f '%k %s\\n'
  kcat -b {bootstrap} -C -t {t.events} -o beginning -f '%k %s\\n'
  echo '{{"commandId":"c-1","action":"list"}}' | kcat -b {bootstrap} -P -t {t.commands} -k c-1

Consumer groups join slowly on this broker: it holds a group join for about half the
session timeout, so a client with librdkafka's default (45 s) gets its first record after
about 24 s. With a 6 s session timeout it takes about 4 s (docs/development.md):

  kcat -b {bootstrap} -G my-group -X session.timeout.ms=6000 \\
       -X auto.offset.reset=earliest {t.results}
      confluent-kafka: "session.timeout.ms": 6000   aiokafka: session_timeout_ms=6000
"""


def check_ports(*, kafka_port: int, port: int, simulator_port: int) -> None:
    """Raise ``StartupError`` naming the first port that is taken, before anything starts."""
    for what, option, number in (
        ("Kafka", "--kafka-port", kafka_port),
        ("the bridge", "--port", port),
        ("the Bird simulator", "--simulator-port", simulator_port),
    ):
        problem = port_problem(HOST, number)
        if problem:
            raise StartupError(
                f"cannot listen on {HOST}:{number} for {what}: {problem} "
                f"(is another `make run` running? choose another port with {option})"
            )


async def run_dev(
    *, kafka_port: int, port: int, simulator_port: int, warnings: Sequence[str] = ()
) -> int:
    """Run everything until SIGINT/SIGTERM; then stop in order: the bridge drains, then the
    simulator, then the broker. ``warnings`` (unknown settings) are logged at start."""
    config = config_module.load(
        dev_environment(kafka_port=kafka_port, port=port, simulator_port=simulator_port)
    )
    logs.configure(fmt="console", level="info", secrets=config.secrets())
    for warning in warnings:
        log.warning(warning)
    check_ports(kafka_port=kafka_port, port=port, simulator_port=simulator_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Its own session: the terminal's Ctrl-C (SIGINT to the foreground process group) must
    # not reach the broker, which stops last. Spawned from this (the main) thread, so that
    # it dies with this process, however this process ends.
    broker = EmbeddedBroker(kafka_port, host=HOST, own_session=True, die_with_parent=True)
    broker.spawn()
    try:
        try:
            await asyncio.to_thread(broker.wait_ready)
        except RuntimeError as exc:
            raise StartupError(str(exc)) from exc
        if not stop.is_set():
            await _run_with_broker(
                config, stop, kafka_port=kafka_port, simulator_port=simulator_port
            )
    finally:
        await asyncio.to_thread(broker.stop)
    return 0


async def _run_with_broker(
    config: Config, stop: asyncio.Event, *, kafka_port: int, simulator_port: int
) -> None:
    simulator = SimulatorServer(
        SimulatorSettings(allow_http_urls=True, delivery_retry_base_s=0.5),
        host=HOST,
        port=simulator_port,
    )
    service: asyncio.Task[None] | None = None
    try:
        try:
            await simulator.start()
        except OSError as exc:  # taken since check_ports
            raise StartupError(f"cannot listen on {HOST}:{simulator_port}: {exc}") from exc
        bridge = Bridge(config, ["ingest", "commands"], tracing=tracing_from_env(os.environ))
        service = asyncio.create_task(serve(bridge, stop=stop))
        started = time.monotonic()
        while not bridge.ready() and not service.done():
            if time.monotonic() - started > 60:
                raise StartupError("the bridge did not become ready within 60 s")
            await asyncio.sleep(0.1)
        if not service.done() and not stop.is_set():
            async with BirdClient(config.bird, bridge.metrics) as bird:
                for line in await ensure_subscriptions(config, bird, webhook_path=WEBHOOK_PATH):
                    log.info("subscriptions: " + line)
            print(banner(config, kafka_port=kafka_port, simulator_port=simulator_port), flush=True)
        await service
    finally:
        stop.set()
        if service is not None:  # the bridge drains first (its failure is already raised)
            await asyncio.gather(service, return_exceptions=True)
        await simulator.stop()
