"""Commands end to end: a simulator, a command producer, and reading results back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from birdsim.server import SimulatorServer
from birdsim.settings import DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY, SimulatorSettings
from bridge.commands.ledger import Ledger
from bridge.config import Config
from bridge.kafka.clients import stop_client
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from bridge.tasks import stop_task

FINAL = ("succeeded", "failed")


def sms_connector(name: str = "Support SMS", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connectorTemplateRef": "sms-messagebird:1",
        "name": name,
        "arguments": {
            "phoneNumberId": str(uuid.uuid4()),
            "channelMessageType": "transactional",
        },
    }
    body.update(overrides)
    return body


def create_command(name: str = "Support SMS", **connector: Any) -> dict[str, Any]:
    return {
        "commandId": f"cmd-{uuid.uuid4()}",
        "action": "create",
        "connector": sms_connector(name, **connector),
    }


def command_env(simulator_url: str) -> dict[str, str]:
    return {
        "BRIDGE_BIRD_API_URL": simulator_url,
        "BRIDGE_BIRD_ACCESS_KEY": DEV_ACCESS_KEY,
        "BRIDGE_BIRD_WORKSPACE_ID": DEFAULT_WORKSPACE_ID,
        "BRIDGE_BIRD_RETRY_BASE_S": "0.05",
        "BRIDGE_BIRD_RETRY_CAP_S": "0.5",
        "BRIDGE_BIRD_REQUEST_TIMEOUT_S": "2",
        "BRIDGE_COMMANDS_DEADLINE_S": "10",
        "BRIDGE_COMMANDS_FOLLOW_TIMEOUT_S": "10",
        "BRIDGE_COMMANDS_FOLLOW_INTERVAL_S": "0.1",
        "BRIDGE_COMMANDS_COMMIT_INTERVAL_S": "0.1",
    }


def fast_simulator(**overrides: Any) -> SimulatorServer:
    settings = SimulatorSettings(
        install_delay_s=overrides.pop("install_delay_s", 0.1),
        activate_delay_s=overrides.pop("activate_delay_s", 0.2),
        **overrides,
    )
    return SimulatorServer(settings)


@dataclass
class Results:
    """Every result record read so far, by commandId, in arrival order."""

    by_command: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, list[bytes]] = field(default_factory=dict)
    headers: dict[str, list[dict[str, bytes]]] = field(default_factory=dict)

    def statuses(self, command_id: str) -> list[str]:
        return [r["data"]["status"] for r in self.by_command.get(command_id, [])]

    def final(self, command_id: str) -> dict[str, Any] | None:
        finals = [r for r in self.by_command.get(command_id, []) if r["data"]["status"] in FINAL]
        return finals[-1] if finals else None


class CommandClient:
    """Produces commands and follows the results topic, like a user's service would."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bootstrap = config.kafka.bootstrap_servers
        self.results = Results()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=config.kafka.enable_idempotence,
        )
        self.consumer = AIOKafkaConsumer(
            config.topics.results,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=f"results-reader-{uuid.uuid4().hex[:6]}",
            session_timeout_ms=config.kafka.session_timeout_ms,
            heartbeat_interval_ms=config.kafka.heartbeat_interval_ms,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        await stop_task(self._task)
        await stop_client(self.consumer)
        await stop_client(self.producer)

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    command_id = event["subject"]
                    self.results.by_command.setdefault(command_id, []).append(event)
                    self.results.raw.setdefault(command_id, []).append(record.value)
                    headers = {k: bytes(v) for k, v in record.headers or ()}
                    self.results.headers.setdefault(command_id, []).append(headers)

    async def send(
        self,
        command: Mapping[str, Any] | bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        value = command if isinstance(command, bytes) else orjson.dumps(command)
        if key is None and isinstance(command, Mapping):
            key = str(command["commandId"]).encode()
        record_headers = [(k, v.encode()) for k, v in (headers or {}).items()]
        await self.producer.send_and_wait(
            self.config.topics.commands, value, key=key, headers=record_headers or None
        )

    async def final(self, command_id: str, timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while (result := self.results.final(command_id)) is None:
                await asyncio.sleep(0.05)
        return result

    async def run(self, command: Mapping[str, Any], timeout: float = 20) -> dict[str, Any]:
        await self.send(command)
        return await self.final(str(command["commandId"]), timeout)


@asynccontextmanager
async def command_client(config: Config) -> AsyncIterator[CommandClient]:
    client = CommandClient(config)
    await client.start()
    try:
        yield client
    finally:
        await stop_client(client)


async def simulator_json(url: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=body) as response,
    ):
        text = await response.read()
        assert response.status < 300, (response.status, text)
        return orjson.loads(text) if text else None


async def bird_connectors(url: str) -> list[dict[str, Any]]:
    """Every connector the simulator holds in the default workspace (through Bird's API)."""
    found: list[dict[str, Any]] = []
    token = ""
    async with aiohttp.ClientSession(headers={"Authorization": f"AccessKey {DEV_ACCESS_KEY}"}) as s:
        while True:
            params = {"limit": "100", **({"pageToken": token} if token else {})}
            path = f"/workspaces/{DEFAULT_WORKSPACE_ID}/connectors"
            async with s.get(url + path, params=params) as response:
                page = await response.json()
            found.extend(page["results"])
            token = page.get("nextPageToken") or ""
            if not token:
                return found


@asynccontextmanager
async def ledger_of(config: Config) -> AsyncIterator[Ledger]:
    """A started ``Ledger`` of ``config`` with its own publisher, stopped on exit."""
    publisher = Publisher(config.kafka, Metrics())
    await publisher.start()
    ledger = Ledger(config, publisher)
    try:
        async with asyncio.timeout(30):
            await publisher.ready.wait()
            await ledger.start()
        yield ledger
    finally:
        await ledger.stop()
        await publisher.stop(timeout=5)
