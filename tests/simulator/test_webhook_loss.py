"""Lost webhooks (``/_simulator/webhooks/loss``): the channel changes, no webhook leaves."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from birdsim import SimulatorServer
from birdsim.loss import WebhookLoss

from .conftest import SUBS, WS, Receiver, call, eventually, sms_connector

LOSS = "/_simulator/webhooks/loss"


def test_loss_counts_down_then_lets_events_through() -> None:
    loss = WebhookLoss(next_count=2)
    assert [loss.take() for _ in range(3)] == [True, True, False]
    loss.all = True
    assert all(loss.take() for _ in range(5))
    assert loss.to_json() == {"next": 0, "all": True, "lost": 7}


async def test_lost_webhooks_never_leave_but_the_channel_changes(
    client: aiohttp.ClientSession, receiver: Receiver, sim: SimulatorServer
) -> None:
    for event in ("channel.created", "channel.updated"):
        status, _ = await call(
            client,
            "POST",
            SUBS,
            json={"service": "channels", "event": event, "url": receiver.hook_url()},
        )
        assert status == 201
    status, body = await call(client, "POST", LOSS, json={"next": 1})
    assert (status, body) == (200, {"next": 1, "all": False, "lost": 0})
    await call(client, "POST", f"/workspaces/{WS}/connectors", json=sms_connector())
    # channel.created is lost, channel.updated (active) is delivered.
    [hook] = await receiver.wait_for(1)
    assert b'"channel.updated"' in hook.body
    await eventually(
        lambda: all(c.status == "active" for c in sim.simulator.state.channels.values())
    )
    status, body = await call(client, "POST", LOSS, json={"all": True})
    assert body == {"next": 0, "all": True, "lost": 1}
    [channel] = sim.simulator.state.channels.values()
    status, _ = await call(
        client, "POST", f"/_simulator/channels/{channel.id}/status", json={"status": "inactive"}
    )
    assert status == 200
    await asyncio.sleep(0.2)
    assert len(receiver.received) == 1  # the update was lost
    status, page = await call(client, "GET", f"/workspaces/{WS}/channels")
    assert [c["status"] for c in page["results"]] == ["inactive"]  # Bird's API shows it
    _, body = await call(client, "GET", LOSS)
    assert body == {"next": 0, "all": True, "lost": 2}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"next": -1}, ".next"),
        ({"next": True}, ".next"),
        ({"all": "yes"}, ".all"),
        ({"x": 1}, ".x"),
    ],
)
async def test_bad_loss_settings_are_refused_by_field(
    client: aiohttp.ClientSession, payload: dict[str, object], field: str
) -> None:
    status, body = await call(client, "POST", LOSS, json=payload)
    assert status == 422
    assert field in body["details"]
