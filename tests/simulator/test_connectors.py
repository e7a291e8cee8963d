"""Connectors and channels over HTTP: auth, validation, pagination, async install, triggers."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import aiohttp
import orjson
import pytest

from birdsim import SimulatorServer
from bridge.ingest.verify import verify_signature

from .conftest import FAST, SUBS, WS, Receiver, call, eventually, sms_connector

CONNECTORS = f"/workspaces/{WS}/connectors"
CHANNELS = f"/workspaces/{WS}/channels"


@pytest.mark.parametrize(
    "authorization",
    [None, "AccessKey wrong", "Bearer dev-access-key", "AccessKey", "accesskey dev-access-key"],
)
async def test_every_bird_route_needs_the_access_key(
    sim: SimulatorServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with aiohttp.ClientSession(base_url=sim.url, headers=headers) as anonymous:
        for method, path in [("GET", CONNECTORS), ("POST", CONNECTORS), ("GET", SUBS)]:
            status, body = await call(anonymous, method, path, json=sms_connector())
            assert status == 401
            assert body["code"] == "Unauthorized"
    assert sim.simulator.state.connectors == {}


async def test_create_answers_201_without_a_channel_then_installs(
    client: aiohttp.ClientSession,
) -> None:
    status, created = await call(client, "POST", CONNECTORS, json=sms_connector())
    assert status == 201
    assert "channel" not in created
    assert "status" not in created
    assert created["workspaceId"] == WS
    assert created["connectorTemplateRef"] == "sms-messagebird:1"
    assert created["connectorTemplateSlug"] == "sms-messagebird"
    assert created["createdAt"].endswith("Z")

    async def channel_active() -> dict[str, object] | None:
        _, connector = await call(client, "GET", f"{CONNECTORS}/{created['id']}")
        if "channel" not in connector:
            return None
        _, channel = await call(client, "GET", f"{CHANNELS}/{connector['channel']['channelId']}")
        return channel if channel["status"] == "active" else None

    channel = await eventually(channel_active)
    assert channel["connectorId"] == created["id"]
    assert channel["platformId"] == "sms"
    assert channel["identifier"] == created["number"]["phoneNumber"]
    assert "statusReason" not in channel
    assert set(channel) >= {"id", "name", "capabilities", "createdAt", "updatedAt"}


async def test_install_emits_created_then_updated_signed_webhooks(
    client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    for event in ("channel.created", "channel.updated"):
        status, _ = await call(
            client,
            "POST",
            SUBS,
            json={
                "service": "channels",
                "event": event,
                "url": receiver.hook_url(),
                "signingKey": "s3cret",
            },
        )
        assert status == 201
    _, created = await call(client, "POST", CONNECTORS, json=sms_connector())
    received = await receiver.wait_for(2)
    bodies = [orjson.loads(r.body) for r in received]
    assert [(b["event"], b["payload"]["status"]) for b in bodies] == [
        ("channel.created", "pending"),
        ("channel.updated", "active"),
    ]
    assert all(b["service"] == "channels" for b in bodies)
    assert all(b["payload"]["connectorId"] == created["id"] for b in bodies)
    for hook in received:
        assert hook.headers["content-type"] == ["application/json"]
        assert hook.headers["messagebird-request-timestamp"][0].isdigit()
        uuid.UUID(hook.headers["messagebird-request-id"][0])
        verify_signature(
            signatures=hook.headers["messagebird-signature"],
            timestamps=hook.headers["messagebird-request-timestamp"],
            url=receiver.hook_url(),
            body=hook.body,
            keys=["s3cret"],
        )


async def test_fail_trigger_ends_inactive_with_a_reason(client: aiohttp.ClientSession) -> None:
    _, created = await call(client, "POST", CONNECTORS, json=sms_connector("Broken [fail]"))

    async def final_channel() -> dict[str, object] | None:
        _, page = await call(client, "GET", CHANNELS)
        done = [c for c in page["results"] if c["status"] != "pending"]
        return done[0] if done else None

    channel = await eventually(final_channel)
    assert channel["status"] == "inactive"
    assert channel["statusReason"] == "connector installation failed"
    assert channel["connectorId"] == created["id"]


async def test_stuck_trigger_stays_pending(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    await call(client, "POST", CONNECTORS, json=sms_connector("Slow [stuck]"))
    await eventually(lambda: sim.simulator.state.channels)
    # Long after the install and activate delays (0.05 s each), it has not moved.
    await asyncio.sleep(0.3)
    _, page = await call(client, "GET", CHANNELS)
    assert [c["status"] for c in page["results"]] == ["pending"]


async def test_fail_installs_switch_fails_every_new_install(
    client: aiohttp.ClientSession,
) -> None:
    status, _ = await call(client, "PATCH", "/_simulator/faults", json={"fail_installs": True})
    assert status == 200
    await call(client, "POST", CONNECTORS, json=sms_connector("Plain name"))

    async def statuses() -> list[str]:
        _, page = await call(client, "GET", CHANNELS, params={"status": "inactive"})
        return [c["status"] for c in page["results"]]

    assert await eventually(statuses) == ["inactive"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"connectorTemplateRef": "whatsapp:1"}, ".name"),
        ({"name": "x", "connectorTemplateRef": "carrier-pigeon:1"}, ".connectorTemplateRef"),
        ({"name": "x", "connectorTemplateRef": "whatsapp:1", "colour": "red"}, ".colour"),
        (
            {"name": "x", "connectorTemplateRef": "sms-messagebird:1", "arguments": {}},
            ".arguments.phoneNumberId",
        ),
        (
            {"name": "x", "connectorTemplateRef": "sms-messagebird:1", "arguments": {}},
            ".arguments.channelMessageType",
        ),
        ([1, 2], "."),
    ],
)
async def test_create_validation_names_the_field(
    client: aiohttp.ClientSession, body: object, field: str
) -> None:
    status, error = await call(client, "POST", CONNECTORS, json=body)
    assert status == 422
    assert error["code"] == "InvalidPayload"
    assert field in error["details"]
    assert isinstance(error["message"], str)


async def test_malformed_json_is_400(client: aiohttp.ClientSession) -> None:
    status, error = await call(
        client, "POST", CONNECTORS, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (status, error["code"]) == (400, "InvalidJson")


async def test_unknown_workspace_is_404(client: aiohttp.ClientSession) -> None:
    other = f"/workspaces/{uuid.uuid4()}"
    for method, path in [
        ("POST", f"{other}/connectors"),
        ("GET", f"{other}/connectors"),
        ("GET", f"{other}/channels"),
    ]:
        status, error = await call(client, method, path, json=sms_connector())
        assert (status, error) == (404, {"code": "NotFound", "message": "workspace not found"})


async def test_list_pages_and_filters_by_template(client: aiohttp.ClientSession) -> None:
    for i in range(5):
        await call(client, "POST", CONNECTORS, json=sms_connector(f"sms {i}", str(uuid.uuid4())))
    for i in range(2):
        await call(
            client,
            "POST",
            CONNECTORS,
            json={"name": f"tg {i}", "connectorTemplateRef": "telegram:1"},
        )
    names: list[str] = []
    params: dict[str, str | int] = {"limit": 2, "templateRef": "sms-messagebird:1"}
    pages = 0
    while True:
        status, page = await call(client, "GET", CONNECTORS, params=params)
        assert status == 200
        pages += 1
        names += [c["name"] for c in page["results"]]
        if "nextPageToken" not in page:
            break
        params["pageToken"] = page["nextPageToken"]
    assert names == [f"sms {i}" for i in range(5)]
    assert pages == 3
    _, everything = await call(client, "GET", CONNECTORS)
    assert len(everything["results"]) == 7
    assert "nextPageToken" not in everything


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"pageToken": "garbage!"}, "pageToken"),
    ],
)
async def test_bad_list_parameters_are_422(
    client: aiohttp.ClientSession, params: dict[str, str], field: str
) -> None:
    status, error = await call(client, "GET", CONNECTORS, params=params)
    assert status == 422
    assert field in error["details"]


async def test_channel_list_limits_and_filters(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    await call(client, "POST", CONNECTORS, json=sms_connector("sms"))
    await call(
        client,
        "POST",
        CONNECTORS,
        json={"name": "mail", "connectorTemplateRef": "email-messagebird:1"},
    )
    await eventually(lambda: len(sim.simulator.state.channels) == 2)
    status, page = await call(client, "GET", CHANNELS, params={"limit": 1000, "platform": "email"})
    assert status == 200
    assert [c["name"] for c in page["results"]] == ["mail"]
    assert page["results"][0]["identifier"].endswith("@simulator.bird.test")
    _, rev = await call(client, "GET", CHANNELS, params={"reverse": "true"})
    assert [c["name"] for c in rev["results"]] == ["mail", "sms"]
    status, _ = await call(client, "GET", CHANNELS, params={"limit": 1001})
    assert status == 422
    status, error = await call(client, "GET", f"{CHANNELS}/{uuid.uuid4()}")
    assert (status, error["code"]) == (404, "NotFound")


async def test_delete_removes_connector_and_channel(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    _, created = await call(client, "POST", CONNECTORS, json=sms_connector())
    channel_id = (await eventually(lambda: list(sim.simulator.state.channels)))[0]
    status, body = await call(client, "DELETE", f"{CONNECTORS}/{created['id']}")
    assert (status, body) == (204, None)
    status, _ = await call(client, "GET", f"{CONNECTORS}/{created['id']}")
    assert status == 404
    status, _ = await call(client, "GET", f"{CHANNELS}/{channel_id}")
    assert status == 404
    status, error = await call(client, "DELETE", f"{CONNECTORS}/{created['id']}")
    assert (status, error["code"]) == (404, "NotFound")


async def test_delete_during_install_stops_it(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    _, created = await call(client, "POST", CONNECTORS, json=sms_connector())
    await call(client, "DELETE", f"{CONNECTORS}/{created['id']}")
    await asyncio.sleep(0.2)
    assert sim.simulator.state.channels == {}


async def test_duplicates_allowed_by_default(client: aiohttp.ClientSession) -> None:
    first, _ = await call(client, "POST", CONNECTORS, json=sms_connector("a"))
    second, _ = await call(client, "POST", CONNECTORS, json=sms_connector("b"))
    assert (first, second) == (201, 201)


@pytest.mark.parametrize("settings", [dataclasses.replace(FAST, reject_duplicates=True)])
async def test_reject_duplicates_option(client: aiohttp.ClientSession) -> None:
    first, _ = await call(client, "POST", CONNECTORS, json=sms_connector("a"))
    second, error = await call(client, "POST", CONNECTORS, json=sms_connector("b"))
    assert first == 201
    assert (second, error) == (
        409,
        {"code": "ConnectorAlreadyExists", "message": "connector already exists"},
    )
    other, _ = await call(client, "POST", CONNECTORS, json=sms_connector("c", str(uuid.uuid4())))
    assert other == 201


async def test_workspaces_are_isolated(client: aiohttp.ClientSession, sim: SimulatorServer) -> None:
    status, added = await call(client, "POST", "/_simulator/workspaces", json={})
    assert status == 201
    other = added["workspaceId"]
    uuid.UUID(other)
    _, mine = await call(client, "POST", CONNECTORS, json=sms_connector("mine"))
    status, theirs = await call(
        client, "POST", f"/workspaces/{other}/connectors", json=sms_connector("theirs")
    )
    assert status == 201
    _, listed = await call(client, "GET", f"/workspaces/{other}/connectors")
    assert [c["name"] for c in listed["results"]] == ["theirs"]
    status, _ = await call(client, "GET", f"/workspaces/{other}/connectors/{mine['id']}")
    assert status == 404
    await eventually(lambda: len(sim.simulator.state.channels) == 2)
    _, channels = await call(client, "GET", f"/workspaces/{other}/channels")
    assert [c["connectorId"] for c in channels["results"]] == [theirs["id"]]
    status, error = await call(
        client, "POST", "/_simulator/workspaces", json={"workspaceId": other}
    )
    assert (status, error["code"]) == (409, "WorkspaceAlreadyExists")
