"""The Bird client's retries against the simulator: no retry starts too close to the
deadline, so the caller gets Bird's last answer rather than "did not answer in time"
(Bird answers each request here in 0.1 s, less than the retry budget)."""

from __future__ import annotations

import time

import pytest

from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    SimulatorSettings,
)
from bridge import config as config_module
from bridge.bird.client import MIN_RETRY_BUDGET_S, BirdClient
from bridge.errors import BirdUnavailable
from bridge.metrics import Metrics
from tests.command_helpers import simulator_json

pytestmark = pytest.mark.integration

CONNECTORS = f"/workspaces/{DEFAULT_WORKSPACE_ID}/connectors"


async def test_the_last_retry_leaves_a_budget_and_the_error_is_birds_answer() -> None:
    async with SimulatorServer(SimulatorSettings()) as sim:
        await simulator_json(sim.url, "PATCH", "/_simulator/faults", {"latency_s": 0.1})
        await simulator_json(
            sim.url,
            "POST",
            "/_simulator/faults/script",
            {"method": "GET", "path": CONNECTORS, "responses": [{"status": 429}] * 200},
        )
        config = config_module.load(
            {
                "BRIDGE_BIRD_API_URL": sim.url,
                "BRIDGE_BIRD_ACCESS_KEY": DEV_ACCESS_KEY,
                "BRIDGE_BIRD_ORGANIZATION_ID": DEFAULT_ORGANIZATION_ID,
                "BRIDGE_BIRD_WORKSPACE_ID": DEFAULT_WORKSPACE_ID,
                "BRIDGE_BIRD_RETRY_BASE_S": "0.05",
                "BRIDGE_BIRD_RETRY_CAP_S": "0.2",
            }
        )
        async with BirdClient(config.bird, Metrics()) as bird:
            deadline = time.monotonic() + 1.0
            with pytest.raises(BirdUnavailable) as raised:
                await bird.request(
                    "GET",
                    CONNECTORS,
                    workspace=DEFAULT_WORKSPACE_ID,
                    operation="list_connectors",
                    deadline=deadline,
                )
        assert raised.value.bird_status == 429
        requests = await simulator_json(
            sim.url, "GET", f"/_simulator/requests?method=GET&path={CONNECTORS}"
        )
        assert len(requests["results"]) >= 3  # it did retry
        assert MIN_RETRY_BUDGET_S > 0.1
