"""The ledger against the real broker: a finished command is kept as its place in the topic,
and its result is read back from there, byte for byte, also by a replica that just started."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest

from bridge.commands.ledger import Ledger
from bridge.commands.ledger_state import Entry
from bridge.errors import LedgerRecordMissing
from bridge.events import rfc3339
from bridge.kafka.clients import ensure_topics
from tests.bridge_helpers import running_bridge
from tests.command_helpers import (
    CommandClient,
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    ledger_of,
)
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration

CONNECTOR = {"id": "k-1", "name": "Support SMS", "arguments": {"from": "+31600000000"}}


def result(command_id: str, status: str) -> bytes:
    # Floats, unicode and nesting: the bytes read back must equal the bytes published.
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"{command_id}-{status}",
            "subject": command_id,
            "data": {"status": status, "connector": CONNECTOR, "score": 0.1, "note": "café ☕"},
        }
    )


async def test_a_finished_command_is_read_back_byte_for_byte(any_broker: Broker) -> None:
    config = bridge_config(any_broker.bootstrap)
    await ensure_topics(config.kafka, [config.topics.ledger], compacted=[config.topics.ledger])
    started = Entry("c-1", "fp", "create", "started", rfc3339(datetime.now(UTC)))
    final = started.accepted(CONNECTOR, result("c-1", "accepted")).final(result("c-1", "succeeded"))
    published = final.final_result
    async with ledger_of(config) as first:
        for entry in (started, final.accepted(CONNECTOR, result("c-1", "accepted")), final):
            await first.write(entry)
        assert first.state.locate("c-1") is not None
        kept = await first.get("c-1")
        assert kept is not None
        assert kept.final_result == published
        assert await first.final_value(kept) == published
    async with ledger_of(config) as restarted:  # another replica, reading the topic
        kept = await restarted.get("c-1")
        assert kept is not None
        assert kept.state == "final"
        assert kept.connector_id == "k-1"
        assert "k-1" in restarted.claimed_connectors()
        assert await restarted.final_value(kept) == published


async def test_a_record_that_is_gone_is_said_so(broker: Broker) -> None:
    config = bridge_config(broker.bootstrap)
    await ensure_topics(config.kafka, [config.topics.ledger], compacted=[config.topics.ledger])
    async with ledger_of(config) as ledger:
        final = Entry("c-2", "fp", "get", "final", rfc3339(datetime.now(UTC)))
        # Points past the end of the partition: nothing with this key will come.
        with pytest.raises(LedgerRecordMissing, match="partition 0"):
            await ledger.final_value(final.compact((0, 10_000)))


async def test_a_resend_under_other_keys_is_answered_by_another_replica_from_the_ledger(
    broker: Broker,
) -> None:
    """A create finishes on one replica; a second replica starts (it loads the ledger's
    index) and shares the partitions; the same command is resent under twelve other keys
    (so to every partition, on both replicas), once more after the second left, and once to
    a replica started afterwards. Every copy is answered with the stored final result, byte
    for byte; Bird gets one POST."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        command = create_command()
        command_id = command["commandId"]
        first = AsyncExitStack()
        await first.enter_async_context(running_bridge(config, ["commands"]))
        try:
            async with command_client(config) as client:
                result = await client.run(command)
                assert result["data"]["status"] == "succeeded"
                async with running_bridge(config, ["commands"]):
                    for n in range(12):
                        await client.send(command, key=f"other-key-{n}".encode())
                    await _finals(client, command_id, 13)
                await client.send(command, key=b"after-the-second-left")
                await _finals(client, command_id, 14)
                await first.aclose()
                async with running_bridge(config, ["commands"]):
                    await client.send(command, key=b"after-a-restart")
                    await _finals(client, command_id, 15)
                finals = [r for r in client.results.raw[command_id] if b'"succeeded"' in r]
                assert len(set(finals)) == 1
        finally:
            await first.aclose()
        posts = [r for r in simulator.simulator.journal.query({}) if r.method == "POST"]
        assert len(posts) == 1
        assert len(await bird_connectors(simulator.url)) == 1
    finally:
        await simulator.stop()


async def _finals(client: CommandClient, command_id: str, count: int) -> None:
    async with asyncio.timeout(30):
        while (
            len([r for r in client.results.raw.get(command_id, []) if b'"succeeded"' in r]) < count
        ):
            await asyncio.sleep(0.05)


async def test_a_ledger_index_that_stops_following_holds_commands_and_asks_for_a_restart(
    broker: Broker,
) -> None:
    """A bug in applying ledger records (simulated: the index raises) must not leave a
    replica deciding on an index that fell behind the topic: its commands wait,
    uncommitted, and /healthz answers 503 so that Kubernetes restarts the process."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        async with running_bridge(config, ["commands"]) as running:
            (check,) = running.bridge.liveness_checks
            ledger = check.__self__  # type: ignore[attr-defined]
            assert isinstance(ledger, Ledger)

            def broken(*_args: object) -> None:
                raise RuntimeError("a bug")

            ledger.state.apply_records = broken  # type: ignore[method-assign,assignment]
            async with command_client(config) as client:
                await client.send(create_command())  # its ledger write reaches the tail
                async with asyncio.timeout(15):
                    while ledger.failure is None:
                        await asyncio.sleep(0.05)
                async with aiohttp.ClientSession() as session:
                    async with session.get(running.url + "/healthz") as response:
                        assert response.status == 503
                        body = await response.json()
                    async with session.get(running.url + "/readyz") as response:
                        assert response.status == 503
                assert "stopped following" in body["reason"]
                assert "RuntimeError" in body["reason"]
                second = create_command()
                await client.send(second)
                await asyncio.sleep(2)
                assert second["commandId"] not in client.results.raw  # held, not answered
        posts = [r for r in simulator.simulator.journal.query({}) if r.method == "POST"]
        assert len(posts) <= 1  # the first create may have reached Bird before the failure
    finally:
        await simulator.stop()
