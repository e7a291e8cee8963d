"""The command worker against the real broker and the Bird simulator (contract sections 3-5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from birdsim.server import SimulatorServer
from birdsim.settings import DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY
from bridge.command_tool import build_command, send_and_follow
from tests.bridge_helpers import RunningBridge, running_bridge
from tests.command_helpers import (
    CommandClient,
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    simulator_json,
)
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    simulator: SimulatorServer
    bridge: RunningBridge
    client: CommandClient

    @property
    def sim_url(self) -> str:
        return self.simulator.url

    async def script(self, method: str, path: str, responses: list[Any]) -> None:
        rule = {"method": method, "path": path, "responses": responses}
        await simulator_json(self.sim_url, "POST", "/_simulator/faults/script", rule)


@asynccontextmanager
async def stack(
    broker: Broker, simulator: SimulatorServer | None = None, **overrides: str
) -> AsyncIterator[Stack]:
    simulator = simulator or fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **{**command_env(simulator.url), **overrides})
        async with (
            running_bridge(config, ["commands"]) as app,
            command_client(config) as client,
        ):
            yield Stack(simulator, app, client)
    finally:
        await simulator.stop()


CONNECTORS = f"/workspaces/{DEFAULT_WORKSPACE_ID}/connectors"


async def test_create_publishes_accepted_then_succeeded(any_broker: Broker) -> None:
    async with stack(any_broker) as s:
        command = create_command()
        final = await s.client.run(command)
        command_id = command["commandId"]
        assert s.client.results.statuses(command_id) == ["accepted", "succeeded"]
        accepted = s.client.results.by_command[command_id][0]
        assert accepted["type"] == "com.bird.bridge.connector.create.accepted"
        assert "channel" not in accepted["data"]  # Bird answers before the channel exists
        assert final["type"] == "com.bird.bridge.connector.create.succeeded"
        assert final["source"] == "bird-bridge"
        assert final["subject"] == command_id
        data = final["data"]
        assert data["error"] is None
        assert data["channel"]["status"] == "active"
        assert data["connector"]["channel"]["channelId"] == data["channel"]["id"]
        connectors = await bird_connectors(s.sim_url)
        assert [c["id"] for c in connectors] == [data["connector"]["id"]]


async def test_get_list_and_delete(broker: Broker) -> None:
    async with stack(broker) as s:
        created = [await s.client.run(create_command(f"sms {i}")) for i in range(3)]
        ids = sorted(c["data"]["connector"]["id"] for c in created)
        # More connectors than one page: the list must follow nextPageToken.
        for i in range(12):
            await simulator_json_authed(
                s.sim_url, "POST", CONNECTORS, create_command(f"x{i}")["connector"]
            )
        listed = await s.client.run({"commandId": f"list-{uuid.uuid4()}", "action": "list"})
        assert listed["data"]["status"] == "succeeded"
        assert len(listed["data"]["connectors"]) == 15
        filtered = await s.client.run(
            {"commandId": f"list-{uuid.uuid4()}", "action": "list", "templateRef": "whatsapp:1"}
        )
        assert filtered["data"]["connectors"] == []

        got = await s.client.run(
            {"commandId": f"get-{uuid.uuid4()}", "action": "get", "connectorId": ids[0]}
        )
        assert got["data"]["connector"]["id"] == ids[0]
        assert got["data"]["channel"]["connectorId"] == ids[0]

        deleted = await s.client.run(
            {"commandId": f"del-{uuid.uuid4()}", "action": "delete", "connectorId": ids[0]}
        )
        assert deleted["type"] == "com.bird.bridge.connector.delete.succeeded"
        assert deleted["data"]["alreadyDeleted"] is False
        again = await s.client.run(
            {"commandId": f"del-{uuid.uuid4()}", "action": "delete", "connectorId": ids[0]}
        )
        assert again["data"]["status"] == "succeeded"
        assert again["data"]["alreadyDeleted"] is True

        missing = await s.client.run(
            {"commandId": f"get-{uuid.uuid4()}", "action": "get", "connectorId": ids[0]}
        )
        assert missing["data"]["status"] == "failed"
        assert missing["data"]["error"]["code"] == "bird_client_error"
        assert missing["data"]["error"]["httpStatus"] == 404
        assert missing["data"]["error"]["retryable"] is False


async def simulator_json_authed(url: str, method: str, path: str, body: Any) -> Any:
    import aiohttp

    headers = {"Authorization": f"AccessKey {DEV_ACCESS_KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, url + path, json=body) as r,
    ):
        assert r.status < 300, await r.text()
        return await r.json()


@pytest.mark.parametrize(
    "responses",
    [
        [429, 429],
        [{"status": 429, "retry_after": 1}],
        [503, 502],  # outcome unknown: the bridge looks before it posts again
        ["reset"],
        ["drop"],  # Bird created it, then the connection broke: adopt, never create twice
    ],
    ids=["429", "429-retry-after", "5xx", "reset", "processed-then-dropped"],
)
async def test_transient_create_failures_end_in_exactly_one_connector(
    broker: Broker, responses: list[Any]
) -> None:
    async with stack(broker) as s:
        await s.script("POST", CONNECTORS, responses)
        command = create_command()
        final = await s.client.run(command)
        assert final["data"]["status"] == "succeeded", final["data"]["error"]
        connectors = await bird_connectors(s.sim_url)
        assert len(connectors) == 1
        assert final["data"]["connector"]["id"] == connectors[0]["id"]


async def test_transient_read_failures_are_retried(broker: Broker) -> None:
    async with stack(broker) as s:
        created = await s.client.run(create_command())
        connector_id = created["data"]["connector"]["id"]
        await s.script("GET", f"{CONNECTORS}/*", [503, 429, "reset", "timeout"])
        got = await s.client.run(
            {"commandId": f"get-{uuid.uuid4()}", "action": "get", "connectorId": connector_id}
        )
        assert got["data"]["status"] == "succeeded"
        requests = await simulator_json(
            s.sim_url, "GET", f"/_simulator/requests?method=GET&path={CONNECTORS}/*"
        )
        assert len([r for r in requests["results"] if connector_id in r["path"]]) >= 5


async def test_client_errors_fail_at_once_with_birds_details(broker: Broker) -> None:
    async with stack(broker) as s:
        command = create_command(connectorTemplateRef="no-such-template:1")
        final = await s.client.run(command)
        error = final["data"]["error"]
        assert final["data"]["status"] == "failed"
        assert s.client.results.statuses(command["commandId"]) == ["failed"]
        assert error["code"] == "bird_client_error"
        assert error["retryable"] is False
        assert 400 <= error["httpStatus"] < 500
        assert error["details"]


async def test_bird_down_past_the_deadline_fails_retryable(broker: Broker) -> None:
    async with stack(broker, BRIDGE_COMMANDS_DEADLINE_S="1.5") as s:
        await s.script("POST", CONNECTORS, [429] * 200)
        final = await s.client.run(create_command())
        error = final["data"]["error"]
        assert error["code"] == "bird_unavailable"
        assert error["retryable"] is True
        assert error["httpStatus"] == 429
        assert await bird_connectors(s.sim_url) == []


async def test_channel_never_active(broker: Broker) -> None:
    async with stack(broker, BRIDGE_COMMANDS_FOLLOW_TIMEOUT_S="1.5") as s:
        # inactive is not known to be final (bird-api.md 3, 6): followed to the deadline.
        inactive = await s.client.run(create_command("shop [fail]"))
        assert inactive["data"]["status"] == "failed"
        assert inactive["data"]["error"]["code"] == "timeout"
        assert "(last status: inactive)" in inactive["data"]["error"]["message"]
        assert inactive["data"]["channel"]["status"] == "inactive"
        stuck = await s.client.run(create_command("shop [stuck]"))
        assert stuck["data"]["error"]["code"] == "timeout"
        assert "pending" in stuck["data"]["error"]["message"]
        assert stuck["data"]["connector"]["id"]


async def test_a_channel_is_followed_through_statuses_not_known_to_be_final(
    broker: Broker,
) -> None:
    async with stack(broker, BRIDGE_COMMANDS_FOLLOW_TIMEOUT_S="30") as s:
        passing, failing = create_command("shop [stuck]"), create_command("other [stuck]")
        await s.client.send(passing)
        await s.client.send(failing)
        channel = await _channel_of(s, passing["commandId"])
        for status in ("provisioning", "inactive"):
            await _set_channel_status(s, channel, status)
            await _read_by_the_bridge_after(s, channel, time.time())
            assert s.client.results.statuses(passing["commandId"]) == ["accepted"]
        await _set_channel_status(s, channel, "active")
        final = await s.client.final(passing["commandId"])
        assert final["data"]["status"] == "succeeded"
        assert final["data"]["channel"]["status"] == "active"
        assert s.client.results.statuses(passing["commandId"]) == ["accepted", "succeeded"]

        # An explicit failure ends the create at once, with Bird's reason.
        await _set_channel_status(
            s, await _channel_of(s, failing["commandId"]), "failed", "number rejected"
        )
        failed = await s.client.final(failing["commandId"])
        assert failed["data"]["error"]["code"] == "channel_failed"
        assert failed["data"]["error"]["retryable"] is False
        assert failed["data"]["error"]["details"] == {"statusReason": "number rejected"}


async def _channel_of(s: Stack, command_id: str) -> str:
    """The channel id of a create's connector, once the simulator installed it."""
    async with asyncio.timeout(15):
        while not s.client.results.statuses(command_id):
            await asyncio.sleep(0.05)
        connector_id = s.client.results.by_command[command_id][0]["data"]["connector"]["id"]
        while True:
            page = await simulator_json_authed(
                s.sim_url, "GET", f"/workspaces/{DEFAULT_WORKSPACE_ID}/channels?limit=100", None
            )
            for channel in page["results"]:
                if channel["connectorId"] == connector_id:
                    return str(channel["id"])
            await asyncio.sleep(0.05)


async def _set_channel_status(
    s: Stack, channel_id: str, status: str, reason: str | None = None
) -> None:
    body = {"status": status, **({"statusReason": reason} if reason else {})}
    await simulator_json(s.sim_url, "POST", f"/_simulator/channels/{channel_id}/status", body)


async def _read_by_the_bridge_after(s: Stack, channel_id: str, moment: float) -> None:
    """Wait until the bridge has read the channel in a request that began after ``moment``."""
    path = f"/_simulator/requests?method=GET&path=/workspaces/*/channels/{channel_id}"
    async with asyncio.timeout(15):
        while True:
            requests = (await simulator_json(s.sim_url, "GET", path))["results"]
            if any(r["timestamp"] > moment and r["status"] == 200 for r in requests):
                return
            await asyncio.sleep(0.05)


async def test_redelivered_commands_are_answered_again_not_re_executed(
    broker: Broker,
) -> None:
    async with stack(broker) as s:
        command = create_command()
        command_id = command["commandId"]
        await s.client.run(command)
        # The producer sends it again, and again under another key.
        await s.client.send(command)
        await s.client.send(command, key=b"other-key")
        async with asyncio.timeout(15):
            while len(s.client.results.raw.get(command_id, [])) < 4:
                await asyncio.sleep(0.05)
        raw = s.client.results.raw[command_id]
        finals = [r for r in raw if b'"succeeded"' in r]
        assert len(finals) == 3
        assert finals[0] == finals[1] == finals[2]  # the same record, byte for byte
        assert len(await bird_connectors(s.sim_url)) == 1


async def test_in_flight_duplicate_under_another_key_creates_once(broker: Broker) -> None:
    simulator = fast_simulator(activate_delay_s=1.0)
    async with stack(broker, simulator) as s:
        command = create_command()
        await s.client.send(command)
        await s.client.send(command, key=b"another-key")
        await s.client.final(command["commandId"])
        async with asyncio.timeout(15):
            while (
                len(
                    [x for x in s.client.results.statuses(command["commandId"]) if x == "succeeded"]
                )
                < 2
            ):
                await asyncio.sleep(0.05)
        assert len(await bird_connectors(s.sim_url)) == 1


async def test_same_commandid_with_other_content_is_dead_lettered(broker: Broker) -> None:
    async with stack(broker) as s:
        command = create_command()
        first = await s.client.run(command)
        reuse = {**command, "connector": {**command["connector"], "name": "other"}}
        await s.client.send(reuse)
        dead = await read_topic(
            broker.bootstrap, s.bridge.bridge.config.topics.dead_letter, expect=1
        )
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert b"already used for a different command" in headers["dlq-reason"]
        assert headers["correlation-id"] == command["commandId"].encode()
        assert s.client.results.final(command["commandId"]) == first
        assert len(await bird_connectors(s.sim_url)) == 1


BAD_RECORDS: list[tuple[bytes, str, str | None]] = [
    (b"not json at all", "$: not valid JSON", None),
    (b"[1,2]", "$: must be a JSON object", None),
    (b'{"action": "get", "connectorId": "x"}', "commandId: is required", None),
    (
        b'{"commandId": "bad-action-1", "action": "explode"}',
        "action: must be one of",
        "bad-action-1",
    ),
    (b'{"commandId": "bad-get-1", "action": "get"}', "connectorId: is required", "bad-get-1"),
    (
        orjson.dumps(
            {
                "commandId": "bad-create-1",
                "action": "create",
                "connector": {"name": "x", "connectorTemplateRef": "t:1", "colour": "red"},
            }
        ),
        "connector.colour: unknown field",
        "bad-create-1",
    ),
]


async def test_bad_records_get_failed_results_and_dead_letters_without_blocking(
    broker: Broker,
) -> None:
    async with stack(broker) as s:
        suffix = uuid.uuid4().hex[:6]
        for value, _, _ in BAD_RECORDS:
            await s.client.send(value.replace(b"-1", f"-{suffix}".encode()), key=b"same-key")
        good = create_command()
        await s.client.send(good, key=b"same-key")  # behind the bad ones on the same partition
        final = await s.client.final(good["commandId"])
        assert final["data"]["status"] == "succeeded"
        config = s.bridge.bridge.config
        dead = await read_topic(
            broker.bootstrap, config.topics.dead_letter, expect=len(BAD_RECORDS)
        )
        assert len(dead) == len(BAD_RECORDS)
        for record, (value, reason, command_id) in zip(dead, BAD_RECORDS, strict=True):
            headers = dict(record.headers)
            assert record.value == value.replace(b"-1", f"-{suffix}".encode())
            assert record.key == b"same-key"
            assert reason in headers["dlq-reason"].decode()
            assert headers["dlq-source-topic"] == config.topics.commands.encode()
            assert int(headers["dlq-source-offset"]) >= 0
            assert "dlq-source-partition" in headers
            if command_id is not None:
                result = await s.client.final(command_id.replace("-1", f"-{suffix}"))
                assert result["data"]["status"] == "failed"
                assert result["data"]["error"]["code"] == "invalid_command"
                assert reason.split(":")[0] == result["data"]["error"]["details"]["field"]


async def test_same_key_runs_in_order_and_different_keys_concurrently(
    broker: Broker,
) -> None:
    async with stack(broker) as s:
        created = await s.client.run(create_command())
        connector_id = created["data"]["connector"]["id"]
        await simulator_json(s.sim_url, "PUT", "/_simulator/faults", {"latency_s": 0.3})
        await simulator_json(s.sim_url, "DELETE", "/_simulator/requests")

        def get(n: str) -> dict[str, Any]:
            return {
                "commandId": f"get-{n}-{uuid.uuid4()}",
                "action": "get",
                "connectorId": connector_id,
            }

        ordered = [get(f"o{i}") for i in range(4)]
        for command in ordered:
            await s.client.send(command, key=b"one-key")
        for command in ordered:
            await s.client.final(command["commandId"])
        requests = (await simulator_json(s.sim_url, "GET", "/_simulator/requests?method=GET"))[
            "results"
        ]
        spans = [
            (r["timestamp"], r["durationMs"]) for r in requests if r["path"].endswith(connector_id)
        ]
        assert len(spans) == 4
        assert _max_overlap(spans) == 1  # strictly one after the other

        await simulator_json(s.sim_url, "DELETE", "/_simulator/requests")
        spread = [get(f"c{i}") for i in range(8)]
        for command in spread:
            await s.client.send(command)  # keyed by commandId: different keys
        for command in spread:
            await s.client.final(command["commandId"])
        requests = (await simulator_json(s.sim_url, "GET", "/_simulator/requests?method=GET"))[
            "results"
        ]
        spans = [
            (r["timestamp"], r["durationMs"]) for r in requests if r["path"].endswith(connector_id)
        ]
        assert _max_overlap(spans) > 1


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most requests Bird was serving at once (start time, duration)."""
    events: list[tuple[float, int]] = []
    for start, duration_ms in spans:
        events += [(start, 1), (start + duration_ms / 1000, -1)]
    events.sort(key=lambda e: (e[0], e[1]))
    live = best = 0
    for _, delta in events:
        live += delta
        best = max(best, live)
    return best


async def test_access_key_never_appears_in_results_or_dead_letters(broker: Broker) -> None:
    async with stack(broker) as s:
        await s.client.run(create_command())
        await s.client.run(create_command(connectorTemplateRef="nope:1"))
        await s.client.send(b'{"commandId": "leak-check", "action": "nope"}')
        await s.client.final("leak-check")
        config = s.bridge.bridge.config
        results = await read_topic(broker.bootstrap, config.topics.results, expect=100, timeout=2)
        dead = await read_topic(broker.bootstrap, config.topics.dead_letter, expect=100, timeout=2)
        ledger = await read_topic(broker.bootstrap, config.topics.ledger, expect=1000, timeout=2)
        blobs = [r.value or b"" for r in results + dead + ledger]
        blobs += [v for r in results + dead for _, v in r.headers]
        assert blobs
        assert not any(DEV_ACCESS_KEY.encode() in blob for blob in blobs)
        metrics = s.bridge.bridge.metrics.render()
        assert DEV_ACCESS_KEY.encode() not in metrics
        assert b"bridge_commands_total" in metrics
        assert orjson.loads(results[0].value)["specversion"] == "1.0"


async def test_an_invalid_command_seen_again_gets_the_same_result(broker: Broker) -> None:
    async with stack(broker) as s:
        command_id = f"bad-{uuid.uuid4()}"
        value = orjson.dumps({"commandId": command_id, "action": "get"})
        await s.client.send(value, key=b"k")
        first = await s.client.final(command_id)
        assert first["data"]["error"]["code"] == "invalid_command"
        await s.client.send(value, key=b"k")
        async with asyncio.timeout(15):
            while len(s.client.results.raw.get(command_id, [])) < 2:
                await asyncio.sleep(0.05)
        raw = s.client.results.raw[command_id]
        assert raw[0] == raw[1]
        # The commandId is taken now: a valid command under it is refused, not executed.
        await s.client.send({"commandId": command_id, "action": "list"})
        config = s.bridge.bridge.config
        dead = await read_topic(broker.bootstrap, config.topics.dead_letter, expect=3)
        # Records of different keys may sit on different partitions: no order across them.
        reasons = [dict(r.headers)["dlq-reason"] for r in dead]
        assert len(reasons) == 3
        refused = b"commandId: already used for a different command; use a new commandId"
        assert reasons.count(refused) == 1
        assert len(s.client.results.raw[command_id]) == 2


async def test_the_command_tool_prints_a_replayed_result_once_and_says_so(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    async with stack(broker) as s:
        config = s.bridge.bridge.config
        command = build_command("create", command_id=f"cli-{uuid.uuid4()}", name="Shop")
        assert await send_and_follow(config, command, timeout=20) == 0
        first = capsys.readouterr().out
        results = [line for line in first.splitlines() if line.startswith("result ")]
        assert results == [
            "result com.bird.bridge.connector.create.accepted",
            "result com.bird.bridge.connector.create.succeeded",
        ]

        # Sent again: answered from the ledger. Printed once, as the replay it is.
        assert await send_and_follow(config, command, timeout=20) == 0
        again = capsys.readouterr().out
        final_id = s.client.results.by_command[command["commandId"]][1]["id"]
        results = [line for line in again.splitlines() if line.startswith("result ")]
        assert results == [
            "result com.bird.bridge.connector.create.succeeded  [replayed: the bridge answered "
            "from its ledger with the result it published earlier for this commandId (id "
            f"{final_id})]"
        ]
        assert again.count('"status": "succeeded"') == 1
        assert len(await bird_connectors(s.sim_url)) == 1
