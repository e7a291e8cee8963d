"""docs/examples/channel_status.py bootstraps from the state topic, then follows events."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from bridge.kafka.embedded import EmbeddedBroker
from tests.bridge_helpers import running_bridge
from tests.command_helpers import command_env, fast_simulator
from tests.integration.test_recovery import channel_event, produce, t, wait_known
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "channel_status.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("channel_status_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_example_reads_the_state_then_only_moves_forward(
    broker: EmbeddedBroker,
) -> None:
    example = load_example()
    simulator = fast_simulator()
    await simulator.start()
    config = bridge_config(broker.bootstrap, **command_env(simulator.url))
    try:
        async with running_bridge(config, ["commands"]):
            await produce(
                config,
                config.topics.events,
                [
                    channel_event("c1", "pending", t(1)),
                    channel_event("c1", "active", t(2)),
                    channel_event("c2", "pending", t(1)),
                ],
            )
            await wait_known(config, {"c1": t(2), "c2": t(1)})
        state = await example.read_state(broker.bootstrap, config.topics.channel_state)
        assert {c: (d["status"], d["updatedAt"]) for c, d in state.items()} == {
            "c1": ("active", t(2)),
            "c2": ("pending", t(1)),
        }
        late = [channel_event("c1", "pending", t(0)), channel_event("c2", "active", t(3))]
        await produce(config, config.topics.events, late)
        follow = example.follow(broker.bootstrap, state, "example", config.topics.events)
        async with asyncio.timeout(30):
            first = await anext(follow)
        await follow.aclose()
        # Everything before was known or older: the first change is c2 going active.
        assert (first[0], first[1]["status"]) == ("c2", "active")
        assert state["c1"]["status"] == "active"
    finally:
        await simulator.stop()
