"""``bridge subscriptions ensure`` against the simulator: idempotent, updates what differs."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    SimulatorSettings,
)
from bridge import config as config_module
from bridge.bird.client import BirdClient
from bridge.metrics import Metrics
from bridge.subscriptions import ensure_subscriptions
from tests.bridge_helpers import running_bridge
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration

BASE = (
    f"/organizations/{DEFAULT_ORGANIZATION_ID}/workspaces/{DEFAULT_WORKSPACE_ID}"
    "/webhook-subscriptions"
)


async def listed(url: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"AccessKey {DEV_ACCESS_KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as s,
        s.get(url + BASE, params={"limit": "100"}) as r,
    ):
        return list((await r.json())["results"])


async def ensure(sim_url: str, public_url: str, key: str) -> list[str]:
    config = config_module.load(
        {
            "BRIDGE_BIRD_API_URL": sim_url,
            "BRIDGE_BIRD_ACCESS_KEY": DEV_ACCESS_KEY,
            "BRIDGE_BIRD_ORGANIZATION_ID": DEFAULT_ORGANIZATION_ID,
            "BRIDGE_BIRD_WORKSPACE_ID": DEFAULT_WORKSPACE_ID,
            "BRIDGE_WEBHOOK_PUBLIC_URL": public_url,
            "BRIDGE_WEBHOOK_SIGNING_KEY": key,
        }
    )
    async with BirdClient(config.bird, Metrics()) as bird:
        return await ensure_subscriptions(config, bird, webhook_path="/webhooks/bird")


async def test_ensure_creates_then_keeps_then_follows_url_and_key() -> None:
    async with SimulatorServer(SimulatorSettings()) as sim:
        first = await ensure(sim.url, "https://bridge.example.org/webhooks/bird", "signing-key-1")
        assert [line.split()[0] for line in first] == ["created", "created"]
        subs = await listed(sim.url)
        assert sorted(s["event"] for s in subs) == ["channel.created", "channel.updated"]
        assert all(s["service"] == "channels" and s["status"] == "active" for s in subs)

        again = await ensure(sim.url, "https://bridge.example.org/webhooks/bird", "signing-key-1")
        assert len(await listed(sim.url)) == 2
        assert all(line.split()[0] in ("kept", "updated") for line in again)

        moved = await ensure(sim.url, "https://bridge2.example.org/webhooks/bird", "signing-key-2")
        assert all(line.startswith("updated") for line in moved)
        subs = await listed(sim.url)
        assert len(subs) == 2
        assert {s["url"] for s in subs} == {"https://bridge2.example.org/webhooks/bird"}


async def test_ensure_at_start_up_registers_in_the_background(broker: Broker) -> None:
    """BRIDGE_ENSURE_SUBSCRIPTIONS=true: the ingest role registers itself at start."""
    async with SimulatorServer(SimulatorSettings()) as sim:
        config = bridge_config(
            broker.bootstrap,
            BRIDGE_ENSURE_SUBSCRIPTIONS="true",
            BRIDGE_BIRD_API_URL=sim.url,
            BRIDGE_BIRD_ACCESS_KEY=DEV_ACCESS_KEY,
            BRIDGE_BIRD_ORGANIZATION_ID=DEFAULT_ORGANIZATION_ID,
            BRIDGE_BIRD_WORKSPACE_ID=DEFAULT_WORKSPACE_ID,
        )
        async with running_bridge(config):
            async with asyncio.timeout(10):
                while len(subs := await listed(sim.url)) < 2:
                    await asyncio.sleep(0.1)
    assert sorted(s["event"] for s in subs) == ["channel.created", "channel.updated"]
    assert {s["url"] for s in subs} == {config.webhook.public_url}
