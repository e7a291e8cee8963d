"""The network between the bridge and Kafka fails: a TCP proxy in front of the broker stalls
(stops forwarding, keeps the sockets) or drops (resets every connection, refuses new ones).

The broker listens on one port and advertises the proxy's, so every connection a client
opens after bootstrap goes through the proxy too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.kafka.embedded import EmbeddedBroker, answers_api_versions, broker_binary, free_port
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
)
from tests.kafka_helpers import bridge_config
from tests.reliability import (
    all_final,
    one_final_each,
    processed_creates,
    repeats,
    wait_all_committed,
    wait_for,
)
from tests.reliability.tcp_proxy import TcpProxy
from tests.reliability.webhook_load import read_events, sender

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PUBLISH_TIMEOUT_S = 2.0
# Longer than the consumer session (2 s) and the Kafka request timeout (5 s).
DROP_S = 8.0


class AdvertisedBroker(EmbeddedBroker):
    """Tansu listening on ``port`` but telling clients to connect to ``advertised_port``."""

    def __init__(self, log_path: Path) -> None:
        super().__init__(log_path=log_path)
        self.advertised_port = free_port()

    @property
    def advertised(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    def start(self, timeout: float = 15.0) -> None:
        argv = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.advertised}",
        ]
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while not answers_api_versions(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"broker did not start on {self.bootstrap}")
            time.sleep(0.02)


@asynccontextmanager
async def broker_behind_proxy(tmp_path: Path) -> AsyncIterator[tuple[AdvertisedBroker, TcpProxy]]:
    broker = AdvertisedBroker(tmp_path / "tansu.log")
    broker.start()
    try:
        async with TcpProxy("127.0.0.1", broker.port, listen_port=broker.advertised_port) as proxy:
            yield broker, proxy
    finally:
        broker.stop()


# --- (a) a stall during webhook traffic -----------------------------------------------


async def test_stalled_kafka_connection_gives_503_in_time_and_no_false_2xx(
    tmp_path: Path,
) -> None:
    """The path to Kafka stalls for 4 s under webhook traffic: every request is answered
    within the publish timeout (503 + Retry-After), none is answered 2xx while nothing can
    reach Kafka, every 2xx is in the topic, as sent, once the path is back, and the retries
    of the deliveries answered 503 add no second copy."""
    async with broker_behind_proxy(tmp_path) as (_, proxy):
        config = bridge_config(
            proxy.address, BRIDGE_WEBHOOK_PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S)
        )
        async with (
            running_bridge(config) as app,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            asyncio.timeout(60),
        ):
            stop = asyncio.Event()
            senders = [
                asyncio.create_task(sender(n, session, app.url, stop, prefix="stall"))
                for n in range(4)
            ]
            await asyncio.sleep(1.5)
            stalled = time.monotonic()
            proxy.stall()
            await asyncio.sleep(4.0)
            await proxy.resume()
            resumed = time.monotonic()
            await asyncio.sleep(3.0)
            stop.set()
            stopped = time.monotonic()
            sent = [s for batch in await asyncio.gather(*senders) for s in batch]
        acknowledged = {s.request_id: s for s in sent if s.acknowledged}
        events = await read_events(proxy.address, config.topics.events, set(acknowledged))

    attempts = [a for s in sent for a in s.attempts]
    refused = [a for a in attempts if a.status == 503]
    assert {a.status for a in attempts} <= {204, 503}
    assert refused, "the stall must produce 503s"
    # 503 within the publish timeout (plus scheduling slack), with Retry-After.
    slowest = max(a.answered - a.started for a in attempts)
    assert slowest < PUBLISH_TIMEOUT_S + 1.0
    assert all(a.retry_after == "5" for a in refused)
    # Nothing answered 2xx while the path was stalled (0.5 s for acks already under way).
    assert [a for a in attempts if a.status == 204 and stalled + 0.5 < a.answered < resumed] == []
    # Every 2xx is in the topic exactly as sent; all deliveries got one in the end.
    assert len(acknowledged) == len(sent)
    for request_id, item in acknowledged.items():
        assert request_id in events, f"{request_id} answered 2xx but is not in the topic"
        assert all(e["data"]["raw"] == item.payload for e in events[request_id])
    # Traffic came back by itself.
    assert all(a.status == 204 for a in attempts if a.started > stopped - 1.0)
    # A retry of a delivery answered 503 waits for the record already on its way, so the
    # stall leaves no copies (the broker stayed up: no write is in doubt).
    twice = [i for i, copies in events.items() if len(copies) > 1]
    assert twice == []
    first_ok = min(a.answered for a in attempts if a.status == 204 and a.started > resumed)
    print(
        f"\nstall: {len(sent)} deliveries, {len(attempts)} requests; 503: {len(refused)} "
        f"(slowest answer {slowest:.2f}s); in the topic twice {len(twice)}; first 204 "
        f"{first_ok - resumed:.2f}s after the stall ended"
    )


# --- (b) dropped connections while commands are in flight ---------------------------------


async def test_dropped_kafka_connections_during_commands(tmp_path: Path) -> None:
    """Every Kafka connection is reset, and new ones refused for 8 s (longer than the
    consumer session and the request timeout), while creates are being followed: after
    recovery every command has exactly one distinct final result and each create made
    exactly one connector."""
    simulator = fast_simulator(install_delay_s=0.2, activate_delay_s=1.0)
    await simulator.start()
    try:
        async with broker_behind_proxy(tmp_path) as (_, proxy):
            config = bridge_config(proxy.address, **command_env(simulator.url))
            async with (
                running_bridge(config, ["commands"]),
                command_client(config) as client,
                asyncio.timeout(90),
            ):
                creates = [create_command(f"drop {i}") for i in range(8)]
                others: list[dict[str, Any]] = [
                    {"commandId": f"del-{i}-{time.time_ns()}", "action": "delete"}
                    | {"connectorId": f"unknown-{i}"}
                    for i in range(2)
                ]
                others.append({"commandId": f"list-{time.time_ns()}", "action": "list"})
                for command in creates + others:
                    await client.send(command)
                ids = [c["commandId"] for c in creates + others]
                await wait_for(
                    lambda: sum("accepted" in client.results.statuses(i) for i in ids) >= 3,
                    timeout=30,
                    what="creates in flight",
                )
                in_flight = sum(client.results.final(i) is None for i in ids)
                await proxy.drop()
                await asyncio.sleep(DROP_S)
                await proxy.resume()
                resumed = time.monotonic()
                await wait_for(all_final(client, ids), timeout=60, what="every final result")
                recovered = time.monotonic() - resumed
                await wait_all_committed(config, len(ids))
                await asyncio.sleep(0.5)  # the last results are read
                outcomes = one_final_each(client, ids)
                repeated = repeats(client, ids)
        for data in outcomes.values():
            assert data["status"] == "succeeded", data["error"]
        names = sorted(c["name"] for c in await bird_connectors(simulator.url))
        assert names == sorted(c["connector"]["name"] for c in creates)
        assert await processed_creates(simulator.url) == len(creates)
        print(
            f"\ndrop: {len(ids)} commands, {in_flight} unfinished when every connection was "
            f"reset; all final {recovered:.1f}s after the path was back; repeated finals "
            f"{repeated}"
        )
    finally:
        await simulator.stop()
