"""Fixtures for the simulator tests: a fast simulator on port 0, an authed client, a receiver."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from birdsim import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    SimulatorServer,
    SimulatorSettings,
)

ORG = DEFAULT_ORGANIZATION_ID
WS = DEFAULT_WORKSPACE_ID
AUTH = {"Authorization": f"AccessKey {DEV_ACCESS_KEY}"}
SUBS = f"/organizations/{ORG}/workspaces/{WS}/webhook-subscriptions"
PHONE_NUMBER_ID = "5e6f7a8b-2222-4c3d-8e9f-777788889999"

FAST = SimulatorSettings(
    install_delay_s=0.05,
    activate_delay_s=0.05,
    allow_http_urls=True,
    delivery_retry_base_s=0.05,
    delivery_retry_cap_s=0.2,
    delivery_timeout_s=2.0,
)


def sms_connector(
    name: str = "Support SMS", phone_number_id: str = PHONE_NUMBER_ID
) -> dict[str, Any]:
    return {
        "name": name,
        "connectorTemplateRef": "sms-messagebird:1",
        "arguments": {"phoneNumberId": phone_number_id, "channelMessageType": "transactional"},
    }


async def eventually(
    check: Callable[[], Any], *, timeout: float = 3.0, interval: float = 0.01
) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@dataclass
class Received:
    path: str
    headers: dict[str, list[str]]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint: records every request and answers the queued statuses (then 204)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    delay_s: float = 0.0

    def hook_url(self, path: str = "/hooks/bird") -> str:
        return f"{self.url}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.received.append(Received(request.path_qs, headers, await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses.popleft() if self.statuses else 204
        return web.Response(status=status)

    async def wait_for(self, count: int, timeout: float = 3.0) -> list[Received]:
        await eventually(lambda: len(self.received) >= count, timeout=timeout)
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield receiver
    await runner.cleanup()


@pytest.fixture
def settings() -> SimulatorSettings:
    return FAST


@pytest.fixture
async def sim(settings: SimulatorSettings) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(settings) as server:
        yield server


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.url, headers=AUTH) as session:
        yield session


async def call(
    client: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    """Status and decoded JSON body (None when empty)."""
    async with client.request(method, path, **kwargs) as response:
        raw = await response.read()
        return response.status, (await response.json() if raw else None)
