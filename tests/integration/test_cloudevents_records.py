"""Every record a running bridge writes to its event and result topics is read by the
official CloudEvents SDK's Kafka structured-mode reader (contract v2, section 9).

Both roles run against the real broker and the Bird simulator. The webhooks carry the
values the SDK used to refuse (times without a zone or not times at all, a workspace id
with a space); the commands provoke every result status: accepted, succeeded, failed
(channel failure, Bird client error, invalid command) and a final result answered again
from the ledger.
"""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from tests.bridge_helpers import running_bridge
from tests.cloudevents_helpers import read_with_sdk
from tests.command_helpers import command_client, command_env, create_command, fast_simulator
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, read_topic

pytestmark = pytest.mark.integration

ODD_TIMES = ["yesterday", "2026-01-01 10:00:00", "2026-01-01T10:00:00", 1751742552, None]


async def test_every_event_and_result_record_is_read_by_the_sdk(broker: Broker) -> None:
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        async with (
            running_bridge(config, ["ingest", "commands"]) as app,
            command_client(config) as client,
            aiohttp.ClientSession() as session,
        ):
            webhooks = [
                channel_event(updatedAt=t, createdAt=t, workspaceId="my workspace")
                for t in ODD_TIMES
            ]
            webhooks += [{"service": "numbers", "event": "number.assigned"}, {"x": [1]}]
            for body in webhooks:
                raw, headers = delivery(body)
                async with session.post(
                    app.url + "/webhooks/bird", data=raw, headers=headers
                ) as response:
                    assert response.status == 204

            created = await client.run(create_command())
            connector_id = created["data"]["connector"]["id"]
            await client.run(create_command("shop [fail]"))
            for action in ("get", "delete", "delete"):
                command = {"commandId": f"cmd-{uuid.uuid4()}", "action": action}
                await client.run({**command, "connectorId": connector_id})
            await client.run({"commandId": f"cmd-{uuid.uuid4()}", "action": "list"})
            await client.run(
                {"commandId": f"cmd-{uuid.uuid4()}", "action": "get", "connectorId": "nope"}
            )
            invalid = {"commandId": f"cmd-{uuid.uuid4()}", "action": "launch"}
            await client.run(invalid)
            await client.run(invalid)  # answered again from the ledger, byte for byte
    finally:
        await simulator.stop()

    events = await read_topic(broker.bootstrap, config.topics.events, expect=len(webhooks))
    assert len(events) == len(webhooks)
    for record in events:
        event = read_with_sdk(record)
        assert event.get_extension("birdorigin") == "webhook"
    sources = {read_with_sdk(r).get_source() for r in events}
    assert "bird:workspaces/my%20workspace" in sources

    results = await read_topic(broker.bootstrap, config.topics.results, expect=100, timeout=3)
    kinds = {orjson.loads(r.value)["type"] for r in results}
    assert kinds >= {
        "com.bird.bridge.connector.create.accepted",
        "com.bird.bridge.connector.create.succeeded",
        "com.bird.bridge.connector.create.failed",
        "com.bird.bridge.connector.get.succeeded",
        "com.bird.bridge.connector.get.failed",
        "com.bird.bridge.connector.delete.succeeded",
        "com.bird.bridge.connector.list.succeeded",
        "com.bird.bridge.connector.unknown.failed",
    }
    for record in results:
        assert read_with_sdk(record).get_subject() == record.key.decode()
