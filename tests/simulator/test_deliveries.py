"""Webhook deliveries: retries, signatures, filters, logs, control endpoints, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any

import aiohttp
import orjson
import pytest

from birdsim import SimulatorServer
from bridge.ingest.verify import verify_signature

from .conftest import AUTH, FAST, SUBS, WS, Receiver, call, eventually, sms_connector

CONNECTORS = f"/workspaces/{WS}/connectors"


async def subscribe(client: aiohttp.ClientSession, url: str, **extra: Any) -> dict[str, Any]:
    payload = {"service": "channels", "event": "channel.created", "url": url, **extra}
    status, created = await call(client, "POST", SUBS, json=payload)
    assert status == 201, created
    return dict(created)


async def test_retries_keep_request_id_timestamp_and_signature(
    client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 500])
    url = receiver.hook_url("/hooks/bird?tenant=a")
    sub = await subscribe(client, url, signingKey="k1")
    await call(client, "POST", CONNECTORS, json=sms_connector())
    attempts = await receiver.wait_for(3)
    await asyncio.sleep(0.3)  # no fourth attempt after the 204
    assert len(attempts) == 3
    for name in (
        "messagebird-request-id",
        "messagebird-request-timestamp",
        "messagebird-signature",
    ):
        assert len({a.headers[name][0] for a in attempts}) == 1, name
    assert len({a.body for a in attempts}) == 1
    assert attempts[0].path == "/hooks/bird?tenant=a"
    verify_signature(
        signatures=attempts[2].headers["messagebird-signature"],
        timestamps=attempts[2].headers["messagebird-request-timestamp"],
        url=url,
        body=attempts[2].body,
        keys=["k1"],
    )

    request_id = attempts[0].headers["messagebird-request-id"][0]
    status, logs = await call(client, "GET", f"{SUBS}/{sub['id']}/logs")
    assert status == 200
    assert logs["results"] == [
        {
            "requestId": request_id,
            "attemptCount": 3,
            "httpStatusCode": 204,
            "executionStatus": "succeeded",
            "createdAt": logs["results"][0]["createdAt"],
        }
    ]
    status, details = await call(
        client, "GET", f"{SUBS}/{sub['id']}/logs/details", params={"requestId": request_id}
    )
    assert status == 200
    assert [d["httpStatusCode"] for d in details["results"]] == [500, 500, 204]
    assert [d["attempt"] for d in details["results"]] == [1, 2, 3]
    assert [d["executionStatus"] for d in details["results"]] == ["failed", "failed", "succeeded"]
    _, failed_only = await call(
        client, "GET", f"{SUBS}/{sub['id']}/logs", params={"executionStatus": "failed"}
    )
    assert failed_only["results"] == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("settings", [dataclasses.replace(FAST, delivery_max_attempts=3)])
async def test_connection_errors_are_retried_then_fail(client: aiohttp.ClientSession) -> None:
    sub = await subscribe(client, f"http://127.0.0.1:{_closed_port()}/hook")
    await call(client, "POST", CONNECTORS, json=sms_connector())

    async def failed() -> list[dict[str, Any]]:
        _, logs = await call(
            client, "GET", f"{SUBS}/{sub['id']}/logs", params={"executionStatus": "failed"}
        )
        return list(logs["results"])

    [log] = await eventually(failed)
    assert (log["attemptCount"], log["httpStatusCode"]) == (3, 0)
    _, details = await call(
        client,
        "GET",
        f"{SUBS}/{sub['id']}/logs/details",
        params={"requestId": log["requestId"]},
    )
    assert all("error" in d for d in details["results"])


async def test_no_signing_key_means_no_signature_header(
    client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await subscribe(client, receiver.hook_url())
    await call(client, "POST", CONNECTORS, json=sms_connector())
    [hook] = await receiver.wait_for(1)
    assert "messagebird-signature" not in hook.headers
    assert hook.headers["messagebird-request-id"]


async def test_event_filters_and_inactive_subscriptions(
    client: aiohttp.ClientSession, receiver: Receiver, sim: SimulatorServer
) -> None:
    def updated(path: str, *filters: tuple[str, str]) -> dict[str, Any]:
        return {
            "event": "channel.updated",
            "eventFilters": [{"key": k, "value": v} for k, v in filters],
            "url": receiver.hook_url(path),
        }

    await subscribe(
        client, **updated("/sms-active", ("platformId", "sms"), ("channelStatus", "active"))
    )
    await subscribe(client, **updated("/email", ("platformId", "email")))
    paused = await subscribe(client, **updated("/paused"))
    await call(client, "PATCH", f"{SUBS}/{paused['id']}", json={"status": "inactive"})
    await call(client, "POST", CONNECTORS, json=sms_connector())
    await receiver.wait_for(1)
    await eventually(
        lambda: all(c.status == "active" for c in sim.simulator.state.channels.values())
    )
    await asyncio.sleep(0.2)
    assert [r.path for r in receiver.received] == ["/sms-active"]


async def test_handlers_do_not_wait_for_slow_receivers(
    client: aiohttp.ClientSession, receiver: Receiver, sim: SimulatorServer
) -> None:
    receiver.delay_s = 0.6
    await subscribe(client, receiver.hook_url())
    await call(client, "POST", CONNECTORS, json=sms_connector())
    channel_id = (await eventually(lambda: list(sim.simulator.state.channels)))[0]
    await receiver.wait_for(1)
    started = asyncio.get_running_loop().time()
    status, _ = await call(
        client, "POST", f"/_simulator/channels/{channel_id}/status", json={"status": "inactive"}
    )
    status2, _ = await call(client, "GET", CONNECTORS)
    assert (status, status2) == (200, 200)
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_control_status_change_emits_channel_updated(
    client: aiohttp.ClientSession, receiver: Receiver, sim: SimulatorServer
) -> None:
    await call(client, "POST", CONNECTORS, json=sms_connector("Slow [stuck]"))
    channel_id = (await eventually(lambda: list(sim.simulator.state.channels)))[0]
    await subscribe(client, receiver.hook_url(), event="channel.updated")
    status, channel = await call(
        client,
        "POST",
        f"/_simulator/channels/{channel_id}/status",
        json={"status": "inactive", "statusReason": "number released"},
    )
    assert status == 200
    assert (channel["status"], channel["statusReason"]) == ("inactive", "number released")
    [hook] = await receiver.wait_for(1)
    event = orjson.loads(hook.body)
    assert event["event"] == "channel.updated"
    assert event["payload"]["status"] == "inactive"
    status, _ = await call(client, "POST", "/_simulator/channels/nope/status", json={"status": "x"})
    assert status == 404
    status, error = await call(
        client, "POST", f"/_simulator/channels/{channel_id}/status", json={"status": 1}
    )
    assert (status, list(error["details"])) == (422, [".status"])


async def test_deliveries_control_endpoint(
    client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    sub = await subscribe(client, receiver.hook_url(), signingKey="k")
    await call(client, "POST", CONNECTORS, json=sms_connector())
    await receiver.wait_for(1)

    async def done() -> list[dict[str, Any]]:
        _, page = await call(
            client, "GET", "/_simulator/deliveries", params={"executionStatus": "succeeded"}
        )
        return list(page["results"])

    [delivery] = await eventually(done)
    assert delivery["subscriptionId"] == sub["id"]
    assert delivery["event"] == "channel.created"
    assert delivery["signed"] is True
    assert delivery["url"] == receiver.hook_url()
    assert delivery["timestamp"] == receiver.received[0].headers["messagebird-request-timestamp"][0]
    assert "signingKey" not in delivery  # the control view never shows keys


async def test_log_details_parameters(client: aiohttp.ClientSession, receiver: Receiver) -> None:
    sub = await subscribe(client, receiver.hook_url())
    status, error = await call(client, "GET", f"{SUBS}/{sub['id']}/logs/details")
    assert (status, list(error["details"])) == (422, ["requestId"])
    status, error = await call(
        client, "GET", f"{SUBS}/{sub['id']}/logs/details", params={"requestId": "nope"}
    )
    assert (status, error["code"]) == (404, "NotFound")
    status, error = await call(
        client, "GET", f"{SUBS}/{sub['id']}/logs", params={"executionStatus": "exploded"}
    )
    assert (status, list(error["details"])) == (422, ["executionStatus"])


async def test_shutdown_cancels_pending_retries_promptly(receiver: Receiver) -> None:
    receiver.statuses.extend([500] * 10)
    settings = dataclasses.replace(FAST, delivery_retry_base_s=30.0, delivery_retry_cap_s=30.0)
    server = SimulatorServer(settings)
    await server.start()
    async with aiohttp.ClientSession(base_url=server.url, headers=AUTH) as client:
        await subscribe(client, receiver.hook_url())
        await call(client, "POST", CONNECTORS, json=sms_connector())
        await receiver.wait_for(1)
    started = asyncio.get_running_loop().time()
    await server.stop()
    await server.stop()  # idempotent
    assert asyncio.get_running_loop().time() - started < 1.0
    assert len(receiver.received) == 1
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with pytest.raises(RuntimeError, match="create a new one"):
        await server.start()


@pytest.mark.parametrize(
    "settings", [dataclasses.replace(FAST, delivery_retry_base_s=0.3, delivery_retry_cap_s=0.3)]
)
async def test_retries_stop_when_the_subscription_is_deleted(
    client: aiohttp.ClientSession, receiver: Receiver, sim: SimulatorServer
) -> None:
    receiver.statuses.extend([500] * 20)
    sub = await subscribe(client, receiver.hook_url())
    await call(client, "POST", CONNECTORS, json=sms_connector())
    await receiver.wait_for(1)
    assert (await call(client, "DELETE", f"{SUBS}/{sub['id']}"))[0] == 204
    await asyncio.sleep(0.7)  # two retry periods
    assert len(receiver.received) == 1
    assert sim.simulator.state.deliveries == {}
