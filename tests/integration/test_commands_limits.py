"""Records near Kafka's 1 MiB record limit on the command path (contract sections 4-5).

The embedded broker has no size limit of its own; the producers enforce
``max_request_size`` (1 MiB) client side, like Kafka's default ``message.max.bytes``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from birdsim.settings import DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY
from bridge.commands.results import dead_letter_record
from bridge.config import Config
from bridge.kafka.size import MAX_RECORD_SIZE, record_size
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    CommandClient,
    command_client,
    command_env,
    create_command,
    fast_simulator,
)
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic

pytestmark = pytest.mark.integration

CONNECTORS = f"/workspaces/{DEFAULT_WORKSPACE_ID}/connectors"


@asynccontextmanager
async def commands(broker: Broker) -> AsyncIterator[tuple[Config, CommandClient, str]]:
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        async with running_bridge(config, ["commands"]), command_client(config) as client:
            yield config, client, simulator.url
    finally:
        await simulator.stop()


def largest_value(key: bytes, prefix: bytes, suffix: bytes) -> bytes:
    """The largest value a default producer sends under ``key``: one byte more is refused."""
    size = MAX_RECORD_SIZE - record_size(key, b"", [])
    while record_size(key, b"x" * size, []) > MAX_RECORD_SIZE:
        size -= 1
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


async def send(client: CommandClient, value: bytes, key: bytes) -> tuple[int, int]:
    """Produce with a default producer (max_request_size 1 MiB); (partition, offset)."""
    metadata = await client.producer.send_and_wait(client.config.topics.commands, value, key=key)
    return metadata.partition, metadata.offset


async def committed(config: Config, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers)
    await admin.start()
    try:
        tp = TopicPartition(config.topics.commands, partition)
        offsets = await admin.list_consumer_group_offsets(
            config.kafka.consumer_group, partitions=[tp]
        )
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return meta.offset if meta is not None else -1


async def wait_committed(config: Config, partition: int, offset: int) -> None:
    async with asyncio.timeout(15):
        while await committed(config, partition) < offset:
            await asyncio.sleep(0.2)


async def test_an_invalid_command_of_a_mebibyte_is_dead_lettered_and_its_key_goes_on(
    broker: Broker,
) -> None:
    async with commands(broker) as (config, client, _):
        key = b"one-key"
        command_id = f"huge-{uuid.uuid4()}"
        # Not a valid action, and the refusal would quote it: the largest record a
        # default producer can send, which its dead letter's headers push over the limit.
        value = largest_value(key, b'{"commandId": "%s", "action": "' % command_id.encode(), b'"}')
        assert record_size(key, value + b"x", []) > MAX_RECORD_SIZE
        partition, offset = await send(client, value, key)
        after = {"commandId": f"list-{uuid.uuid4()}", "action": "list"}
        _, last = await send(client, orjson.dumps(after), key)

        refused = await client.final(command_id)
        assert refused["data"]["status"] == "failed"
        assert refused["data"]["error"]["code"] == "invalid_command"
        assert refused["data"]["error"]["details"]["field"] == "action"
        assert len(refused["data"]["error"]["message"]) < 300  # quotes the input cut short
        assert (await client.final(after["commandId"]))["data"]["status"] == "succeeded"
        await wait_committed(config, partition, last + 1)

        [dead] = await read_topic(broker.bootstrap, config.topics.dead_letter, expect=1)
        headers = dict(dead.headers)
        assert dead.value == b""
        assert dead.key == key
        assert headers["dlq-original-size"] == str(len(value)).encode()
        assert b"over Kafka's record limit of 1048576" in headers["dlq-value-omitted"]
        assert headers["dlq-reason"].startswith(b"action: must be one of")
        assert len(headers["dlq-reason"]) < 300
        assert headers["dlq-source-offset"] == str(offset).encode()
        assert headers["correlation-id"] == command_id.encode()


async def test_an_unexpected_error_in_a_record_does_not_stop_its_lane(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    def failing_once(**fields: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return dead_letter_record(**fields)

    monkeypatch.setattr("bridge.commands.worker.dead_letter_record", failing_once)
    async with commands(broker) as (config, client, _):
        partition, offset = await send(client, b"not json", b"k")
        after = {"commandId": f"list-{uuid.uuid4()}", "action": "list"}
        _, last = await send(client, orjson.dumps(after), b"k")
        assert (await client.final(after["commandId"]))["data"]["status"] == "succeeded"
        await wait_committed(config, partition, last + 1)
        [dead] = await read_topic(broker.bootstrap, config.topics.dead_letter, expect=1)
        assert dict(dead.headers)["dlq-reason"] == b"internal error: RuntimeError"
        assert dead.value == b"not json"
        assert dict(dead.headers)["dlq-source-offset"] == str(offset).encode()


async def bird_post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"AccessKey {DEV_ACCESS_KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(url + CONNECTORS, json=body) as response,
    ):
        assert response.status == 201, await response.text()
        return dict(await response.json())


async def test_results_over_the_record_limit_fail_with_result_too_large(
    broker: Broker,
) -> None:
    big = "m" * 400_000
    async with commands(broker) as (_, client, sim_url):
        # A list of three connectors of 0.4 MB each, and one connector of 0.8 MB whose
        # channel repeats its 0.4 MB name: neither result fits in a Kafka record.
        for _ in range(3):
            await bird_post(sim_url, create_command("x", arguments=_args(big))["connector"])
        huge = await bird_post(sim_url, create_command(big, arguments=_args(big))["connector"])
        await asyncio.sleep(0.5)  # its channel is installed

        listed = await client.run({"commandId": f"list-{uuid.uuid4()}", "action": "list"})
        error = listed["data"]["error"]
        assert (listed["data"]["status"], error["code"]) == ("failed", "result_too_large")
        assert error["details"]["size"] > MAX_RECORD_SIZE == error["details"]["limit"]
        assert error["details"]["resultStatus"] == "succeeded"
        assert f"({error['details']['size']} bytes)" in error["message"]
        assert "narrow the list with templateRef" in error["message"]

        got = await client.run(
            {"commandId": f"get-{uuid.uuid4()}", "action": "get", "connectorId": huge["id"]}
        )
        error = got["data"]["error"]
        assert (got["data"]["status"], error["code"]) == ("failed", "result_too_large")
        assert error["details"]["connectorId"] == huge["id"]
        assert error["details"]["channelStatus"] == "active"

        # A create whose connector is too large to be stored twice (ledger: the connector
        # and its accepted result) publishes no accepted result, and succeeds.
        create = create_command("y", arguments=_args("a" * 600_000))
        final = await client.run(create)
        assert final["data"]["status"] == "succeeded", final["data"]["error"]
        assert client.results.statuses(create["commandId"]) == ["succeeded"]
        assert final["data"]["connector"]["arguments"] == create["connector"]["arguments"]

        # Asked again, each gets the same result again (from the ledger).
        await client.send(create)
        async with asyncio.timeout(15):
            while len(client.results.raw[create["commandId"]]) < 2:
                await asyncio.sleep(0.05)
        first, again = client.results.raw[create["commandId"]]
        assert first == again


def _args(message_type: str) -> dict[str, str]:
    return {"phoneNumberId": str(uuid.uuid4()), "channelMessageType": message_type}
