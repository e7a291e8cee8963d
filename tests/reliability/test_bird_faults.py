"""Bird misbehaving under the command worker: bursts of 429 / 5xx / timeouts / cut
connections, Bird down for shorter and longer than the command deadline, and the
outbound rate limit. In-process bridge (commands role), real broker, the simulator.

Time is scaled down: "Bird down for a while" is 5 s, against a command deadline of 8 s
(shorter) and of 2 s (longer), where production uses 60 s; one case keeps Bird down for
15 s, outlasting the retry cap many times over."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from birdsim.server import SimulatorServer
from birdsim.settings import DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    CommandClient,
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    simulator_json,
    sms_connector,
)
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config
from tests.reliability import (
    all_final,
    bird_requests,
    max_per_window,
    one_final_each,
    processed_creates,
    wait_for,
)
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WS = f"/workspaces/{DEFAULT_WORKSPACE_ID}"


@asynccontextmanager
async def commands_bridge(
    broker: Broker, bird_url: str, **overrides: str
) -> AsyncIterator[CommandClient]:
    """The bridge's commands role in-process against ``bird_url``, and a command client."""
    config = bridge_config(broker.bootstrap, **{**command_env(bird_url), **overrides})
    async with running_bridge(config, ["commands"]), command_client(config) as client:
        yield client


async def script(url: str, rules: list[dict[str, Any]]) -> None:
    await simulator_json(url, "POST", "/_simulator/faults/script", rules)


async def create_at_bird(simulator: SimulatorServer, name: str) -> str:
    """A connector made directly at Bird (not through the bridge), once its channel is active."""
    headers = {"Authorization": f"AccessKey {DEV_ACCESS_KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(simulator.url + WS + "/connectors", json=sms_connector(name)) as response,
    ):
        assert response.status == 201
        connector_id = str((await response.json())["id"])
    state = simulator.simulator.state
    await wait_for(
        lambda: any(
            c.connector_id == connector_id and c.status == "active" for c in state.channels.values()
        ),
        timeout=10,
        what="the channel to become active",
    )
    return connector_id


def command(action: str, **fields: Any) -> dict[str, Any]:
    return {"commandId": f"{action}-{uuid.uuid4()}", "action": action, **fields}


async def test_bursts_of_429_5xx_timeouts_and_cut_connections(broker: Broker) -> None:
    """Every kind of transient failure Bird can give, in bursts on creates, reads and the
    look-up lists: every command succeeds and each create makes exactly one connector."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        # A hung request is answered 504 after 2 s: long past the bridge's 0.5 s timeout.
        await simulator_json(simulator.url, "PATCH", "/_simulator/faults", {"hang_s": 2})
        async with commands_bridge(
            broker, simulator.url, BRIDGE_BIRD_REQUEST_TIMEOUT_S="0.5"
        ) as client:
            kept = await create_at_bird(simulator, "kept")
            await script(
                simulator.url,
                [
                    {
                        "method": "POST",
                        "path": "/workspaces/*/connectors",
                        "responses": [
                            *(429, 429, {"status": 429, "retry_after": 1}, 503, 500),
                            *("timeout", "reset", "drop", 502, "drop"),
                        ],
                    },
                    {
                        "method": "GET",
                        "path": "/workspaces/*/connectors",  # the list (create look-ups)
                        "responses": [503, "timeout", 429, "reset"],
                    },
                    {
                        "method": "GET",
                        "path": "/workspaces/*/c*/*",  # one connector or channel
                        "responses": [429, 429, 429, 503, "timeout", "reset", "drop", 504],
                    },
                ],
            )
            creates = [create_command(f"burst {i}") for i in range(6)]
            reads = [command("get", connectorId=kept), command("list")]
            started = time.monotonic()
            for c in creates + reads:
                await client.send(c)
            ids = [c["commandId"] for c in creates + reads]
            await wait_for(all_final(client, ids), timeout=60, what="every final result")
            took = time.monotonic() - started
            outcomes = one_final_each(client, ids)
            pending = await simulator_json(simulator.url, "GET", "/_simulator/faults")
        for data in outcomes.values():
            assert data["status"] == "succeeded", data["error"]
        assert pending["script"] == [], "every scripted fault was served"
        names = sorted(c["name"] for c in await bird_connectors(simulator.url))
        assert names == sorted(["kept"] + [c["connector"]["name"] for c in creates])
        assert await processed_creates(simulator.url) == len(creates) + 1
        # Every scripted answer shows in Bird's request log (a hung one once it ends).
        faults: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while len(faults) < 22:
                await asyncio.sleep(0.2)
                served = await bird_requests(simulator.url)
                faults = [r for r in served if r["fault"] == "script"]
        kinds = sorted(str(r["status"]) for r in faults)
        print(f"\nbursts: faults {kinds}; {len(ids)} commands succeeded in {took:.1f}s")
    finally:
        await simulator.stop()


@pytest.mark.parametrize(
    ("outage", "outage_s", "patient_s", "hasty_s"),
    [
        ("every-request-503", 5.0, 8, 2),
        ("connection-refused", 5.0, 8, 2),
        # Longer than the backoff cap many times over (30 waits at 0.5 s) and than the
        # short deadline three times over: what a minute showed, in a quarter of the time.
        ("every-request-503", 15.0, 20, 5),
    ],
    ids=["503-5s", "refused-5s", "503-15s"],
)
async def test_bird_down_shorter_and_longer_than_the_deadline(
    broker: Broker, outage: str, outage_s: float, patient_s: int, hasty_s: int
) -> None:
    """Bird is unavailable for ``outage_s``. A bridge whose command deadline is longer
    carries every command through it; one whose deadline is shorter fails them
    ``bird_unavailable``, retryable, and creates nothing. Both see the same outage."""
    simulator = fast_simulator()
    await simulator.start()
    proxy = TcpProxy("127.0.0.1", simulator.port or 0)
    await proxy.start()
    bird_url = f"http://{proxy.address}"
    try:
        async with AsyncExitStack() as stack:
            patient = await stack.enter_async_context(
                commands_bridge(broker, bird_url, BRIDGE_COMMANDS_DEADLINE_S=str(patient_s))
            )
            hasty = await stack.enter_async_context(
                commands_bridge(broker, bird_url, BRIDGE_COMMANDS_DEADLINE_S=str(hasty_s))
            )
            targets = {
                name: await create_at_bird(simulator, name) for name in ("p-del", "p-get", "h-del")
            }

            def stream(prefix: str) -> list[dict[str, Any]]:
                return [
                    create_command(f"{prefix} create"),
                    command("get", connectorId=targets[f"{prefix}-get"])
                    if prefix == "p"
                    else command("get", connectorId=targets["p-get"]),
                    command("list"),
                    command("delete", connectorId=targets[f"{prefix}-del"]),
                ]

            patient_commands, hasty_commands = stream("p"), stream("h")
            if outage == "every-request-503":
                rule = {"method": "*", "path": "/workspaces/*", "responses": [503] * 5000}
                await script(simulator.url, [rule])
            else:
                await proxy.drop()
            down = time.monotonic()
            for c in patient_commands:
                await patient.send(c)
            for c in hasty_commands:
                await hasty.send(c)
            await asyncio.sleep(outage_s - (time.monotonic() - down))
            if outage == "every-request-503":
                await simulator_json(simulator.url, "DELETE", "/_simulator/faults/script")
            else:
                await proxy.resume()
            up = time.monotonic()

            patient_ids = [c["commandId"] for c in patient_commands]
            hasty_ids = [c["commandId"] for c in hasty_commands]
            await wait_for(all_final(patient, patient_ids), timeout=30, what="patient finals")
            recovered = time.monotonic() - up
            await wait_for(all_final(hasty, hasty_ids), timeout=30, what="hasty finals")
            patient_outcomes = one_final_each(patient, patient_ids)
            hasty_outcomes = one_final_each(hasty, hasty_ids)

            # Shorter than the deadline: everything went through once Bird was back.
            for data in patient_outcomes.values():
                assert data["status"] == "succeeded", data["error"]
            assert patient_outcomes[patient_ids[3]]["alreadyDeleted"] is False
            # Longer than the deadline: failed, retryable, nothing done at Bird.
            for data in hasty_outcomes.values():
                assert data["status"] == "failed"
                error = data["error"]
                assert error["code"] == "bird_unavailable", error
                assert error["retryable"] is True
                # 503 when a call was answered before the deadline; on a busy machine the
                # short deadline can pass before the first call, and no status is known.
                expected = {503, None} if outage == "every-request-503" else {None}
                assert error["httpStatus"] in expected, error
            # The failed create is final: the same commandId is answered again, unchanged.
            await hasty.send(hasty_commands[0])
            first = hasty.results.raw[hasty_ids[0]][0]
            await wait_for(lambda: len(hasty.results.raw[hasty_ids[0]]) == 2, timeout=15)
            assert hasty.results.raw[hasty_ids[0]][1] == first
            # Retryable means it: a new command for the same connector now succeeds.
            again = create_command("h create")
            assert (await hasty.run(again, timeout=30))["data"]["status"] == "succeeded"

        names = sorted(c["name"] for c in await bird_connectors(simulator.url))
        # p-del was deleted; h-del was not (its delete failed); one connector per create.
        assert names == sorted(["h create", "h-del", "p create", "p-get"])
        assert await processed_creates(simulator.url) == 3 + 2
        print(
            f"\noutage {outage}: {outage_s:g}s; deadline {patient_s}s -> {len(patient_ids)} "
            f"succeeded; deadline {hasty_s}s -> {len(hasty_ids)} failed bird_unavailable; "
            f"Bird back at +{up - down:.1f}s; last patient final {recovered:.1f}s later"
        )
    finally:
        await proxy.stop()
        await simulator.stop()


async def test_outbound_get_rate_stays_under_the_limit(broker: Broker) -> None:
    """50 commands at once, 20 GET/s allowed: Bird never sees more than 20 GETs of the
    workspace in any one-second window, and the limit is reached (the test saturates it)."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        # Bird's own limit, the same 20/s: an excess would also show up as 429s.
        await simulator_json(
            simulator.url, "PATCH", "/_simulator/faults", {"rate_limit_get_per_s": 20}
        )
        async with commands_bridge(
            broker,
            simulator.url,
            BRIDGE_BIRD_RATE_GET_PER_S="20",
            BRIDGE_COMMANDS_MAX_IN_FLIGHT="50",
        ) as client:
            connector_id = await create_at_bird(simulator, "rate")
            await simulator_json(simulator.url, "DELETE", "/_simulator/requests")
            commands = [command("get", connectorId=connector_id) for _ in range(30)]
            commands += [command("list") for _ in range(10)]  # 30 x 2 + 10 = 70 GETs
            for c in commands:
                await client.send(c)
            ids = [c["commandId"] for c in commands]
            await wait_for(all_final(client, ids), timeout=60, what="every final result")
            outcomes = one_final_each(client, ids)
        assert all(d["status"] == "succeeded" for d in outcomes.values())
        gets = [
            r
            for r in await bird_requests(simulator.url, method="GET")
            if r["workspaceId"] == DEFAULT_WORKSPACE_ID
        ]
        stamps = [r["timestamp"] for r in gets]
        busiest = max_per_window(stamps)
        throttled = [r for r in gets if r["status"] == 429]
        span = max(stamps) - min(stamps)
        print(
            f"\nrate: {len(gets)} GETs over {span:.2f}s ({len(gets) / span:.1f}/s); "
            f"busiest 1 s window {busiest}; 429s {len(throttled)}"
        )
        assert len(gets) == 70
        assert busiest <= 20
        assert busiest >= 18, "the test must reach the limit to show anything"
        assert throttled == []
    finally:
        await simulator.stop()
