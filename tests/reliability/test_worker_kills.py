"""SIGKILL the command worker at seeded random moments of a create + delete stream."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from birdsim.settings import DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY
from bridge.kafka.clients import all_topics, ensure_topics
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
from tests.kafka_helpers import bridge_config, broker_env
from tests.reliability import (
    BridgeProcess,
    all_final,
    bird_requests,
    one_final_each,
    processed_creates,
    repeats,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 1126
KILLS = 5
MAX_CREATES = 80  # the stream runs until the last kill (10 s apart: the session timeout)


def delete_command(connector_id: str) -> dict[str, Any]:
    return {"commandId": f"del-{uuid.uuid4()}", "action": "delete", "connectorId": connector_id}


@dataclass
class Stream:
    """The commands produced so far; every third create's connector is deleted once it has
    finished, and now and then a delete of an id Bird never had goes in between."""

    client: CommandClient
    rng: random.Random
    creates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[dict[str, Any]] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)  # indexes of creates deleted later

    @property
    def ids(self) -> list[str]:
        return [c["commandId"] for c in self.creates + self.deletes]

    def outstanding(self) -> int:
        return sum(1 for i in self.ids if self.client.results.final(i) is None)

    async def _delete_finished(self) -> None:
        for index in range(1, len(self.creates), 3):
            final = self.client.results.final(self.creates[index]["commandId"])
            if index not in self.deleted and final is not None:
                self.deleted.add(index)
                await self._send_delete(final["data"]["connector"]["id"])

    async def _send_delete(self, connector_id: str) -> None:
        command = delete_command(connector_id)
        self.deletes.append(command)
        await self.client.send(command)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and len(self.creates) < MAX_CREATES:
            command = create_command(f"kill {len(self.creates)}")
            self.creates.append(command)
            await self.client.send(command)
            if self.rng.random() < 0.25:
                await self._send_delete(f"unknown-{uuid.uuid4()}")
            await self._delete_finished()
            await asyncio.sleep(self.rng.uniform(0.3, 1.0))
        async with asyncio.timeout(90):
            while len(self.deleted) < len(range(1, len(self.creates), 3)):
                await self._delete_finished()
                await asyncio.sleep(0.1)


async def test_sigkill_at_seeded_random_moments_of_a_create_and_delete_stream(
    broker: Broker, tmp_path: Path
) -> None:
    """Five SIGKILLs at seeded random moments while creates and deletes flow, a restart
    after each: every command ends with one distinct final result, Bird holds exactly the
    connectors that were created and not deleted, and none was created twice."""
    rng = random.Random(SEED)
    simulator = fast_simulator(install_delay_s=0.2, activate_delay_s=0.8)
    await simulator.start()
    log = tmp_path / "worker.log"
    try:
        # Every Bird call takes 0.2-0.5 s, so kills also land while calls are open.
        await simulator_json(
            simulator.url,
            "PUT",
            "/_simulator/faults",
            {"latency_s": 0.2, "latency_jitter_s": 0.3, "seed": SEED},
        )
        env = broker_env(broker.bootstrap, **command_env(simulator.url))
        config = bridge_config(broker.bootstrap, **{**env, "BRIDGE_HTTP_PORT": "0"})
        await ensure_topics(
            config.kafka, all_topics(config.topics), compacted=[config.topics.ledger]
        )
        kills: list[tuple[float, float, int]] = []  # (ready -> kill s, at s, unfinished)
        stop = asyncio.Event()
        async with command_client(config) as client:
            stream = Stream(client, rng)
            started = time.monotonic()
            producing = asyncio.create_task(stream.run(stop))
            for _ in range(KILLS):
                with BridgeProcess(env, log) as worker:
                    await worker.wait_ready()
                    delay = rng.uniform(0.2, 2.5)
                    await asyncio.sleep(delay)
                    worker.kill()
                    at = round(time.monotonic() - started, 2)
                    kills.append((round(delay, 2), at, stream.outstanding()))
            stop.set()
            with BridgeProcess(env, log):
                await asyncio.wait_for(producing, timeout=90)
                ids = stream.ids
                await wait_for(all_final(client, ids), timeout=60, what="every final result")
                finished = time.monotonic() - started
                await asyncio.sleep(1.0)  # stray repeats arrive now
            outcomes = one_final_each(client, ids)
            replayed = repeats(client, ids)
        creates, deletes, to_delete = stream.creates, stream.deletes, stream.deleted
        # Each kill hit the stream while commands were in flight.
        assert all(outstanding > 0 for _, _, outstanding in kills), kills

        # Every create succeeded, each with its own connector.
        created_ids = []
        for command in creates:
            data = outcomes[command["commandId"]]
            assert data["status"] == "succeeded", data["error"]
            created_ids.append(data["connector"]["id"])
        assert len(set(created_ids)) == len(creates)
        # Deletes: the created ones were deleted, the unknown ones never existed.
        deleted_ids = {created_ids[i] for i in to_delete}
        for command in deletes:
            data = outcomes[command["commandId"]]
            assert data["status"] == "succeeded", data["error"]
            assert data["connectorId"] == command["connectorId"]
            if command["connectorId"].startswith("unknown-"):
                assert data["alreadyDeleted"] is True
        assert {c["connectorId"] for c in deletes} >= deleted_ids
        # Bird holds exactly one connector per create that was not deleted ...
        held = await bird_connectors(simulator.url)
        survivors = [c for i, c in enumerate(creates) if i not in to_delete]
        assert sorted(c["name"] for c in held) == sorted(c["connector"]["name"] for c in survivors)
        assert {c["id"] for c in held} == set(created_ids) - deleted_ids
        # ... and no connector was ever created twice (deleted ones included).
        assert await processed_creates(simulator.url) == len(creates)
        removed = await bird_requests(simulator.url, method="DELETE", status="204")
        assert sorted(r["path"].rsplit("/", 1)[1] for r in removed) == sorted(deleted_ids)
        text = log.read_text()
        assert DEV_ACCESS_KEY not in text
        print(
            f"\nworker kills (delay after ready, at, unfinished): {kills}; {len(ids)} commands "
            f"({len(creates)} creates, "
            f"{len(deletes)} deletes); all final after {finished:.1f}s; "
            f"repeated finals {replayed}; adopted after a crash "
            f"{text.count('found the connector of a started create')}; "
            f"resumed accepted creates {text.count('resuming create')}"
        )
    finally:
        await simulator.stop()


async def test_a_request_whose_client_vanished_is_not_logged_as_processed() -> None:
    """As after a SIGKILL in the test above: the worker dies while its POST is held in the
    simulator's latency. No connector exists, so the request log must not say 'processed'
    (it used to say 'processed, 500', and a count of creates from the log was one too high)."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        await simulator_json(simulator.url, "PATCH", "/_simulator/faults", {"latency_s": 0.3})
        body = orjson.dumps(sms_connector("vanished"))
        head = (
            f"POST /workspaces/{DEFAULT_WORKSPACE_ID}/connectors HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: AccessKey {DEV_ACCESS_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        _, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
        writer.write(head.encode() + body)
        await writer.drain()
        await asyncio.sleep(0.1)  # the simulator holds the request (latency)
        writer.transport.abort()  # the client dies, as on SIGKILL
        await wait_for(lambda: bool(simulator.simulator.journal.query({})), timeout=5)
        logged = await bird_requests(simulator.url, method="POST")
        assert await bird_connectors(simulator.url) == []  # nothing was created
        assert len(logged) == 1
        assert (logged[0]["status"], logged[0]["processed"]) == (None, False)
    finally:
        await simulator.stop()
