"""Webhook subscriptions over HTTP: CRUD, PATCH rules, URL rule, limits, available events."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import aiohttp
import pytest

from .conftest import FAST, ORG, SUBS, WS, call


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "service": "channels",
        "event": "channel.updated",
        "url": "https://hooks.example.org/bird",
        "signingKey": "my-signing-secret",
        **overrides,
    }


async def test_crud_round_trip(client: aiohttp.ClientSession) -> None:
    filters = [{"key": "platformId", "value": "sms"}]
    status, created = await call(client, "POST", SUBS, json=body(eventFilters=filters))
    assert status == 201
    assert created["organizationId"] == ORG
    assert created["workspaceId"] == WS
    assert created["status"] == "active"
    assert created["eventFilters"] == filters
    uuid.UUID(created["id"])
    item = f"{SUBS}/{created['id']}"
    assert await call(client, "GET", item) == (200, created)

    status, patched = await call(
        client, "PATCH", item, json={"status": "inactive", "url": "https://other.example.org/h"}
    )
    assert status == 200
    assert (patched["status"], patched["url"]) == ("inactive", "https://other.example.org/h")
    assert patched["event"] == "channel.updated"
    assert patched["createdAt"] == created["createdAt"]

    assert await call(client, "DELETE", item) == (204, None)
    status, error = await call(client, "GET", item)
    assert (status, error["code"]) == (404, "NotFound")
    status, _ = await call(client, "DELETE", item)
    assert status == 404


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({}, "."),
        ({"event": "channel.created"}, ".event"),
        ({"service": "numbers"}, ".service"),
        ({"id": "x"}, ".id"),
        ({"status": "paused"}, ".status"),
        ({"url": "ftp://hooks.example.org/x"}, ".url"),
        ({"eventFilters": [{"key": "messageStatus", "value": "x"}]}, ".eventFilters[0].key"),
    ],
)
async def test_patch_rules(client: aiohttp.ClientSession, patch: Any, field: str) -> None:
    _, created = await call(client, "POST", SUBS, json=body())
    status, error = await call(client, "PATCH", f"{SUBS}/{created['id']}", json=patch)
    assert status == 422
    assert field in error["details"]
    _, unchanged = await call(client, "GET", f"{SUBS}/{created['id']}")
    assert unchanged == created


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"service": "pigeons"}, ".service"),
        ({"event": "channel.exploded"}, ".event"),
        ({"url": "hooks.example.org/bird"}, ".url"),
        ({"transport": "pigeon"}, ".transport"),
        ({"eventFilters": {"key": "platformId"}}, ".eventFilters"),
        ({"signingKey": 5}, ".signingKey"),
    ],
)
async def test_create_validation(
    client: aiohttp.ClientSession, overrides: dict[str, Any], field: str
) -> None:
    status, error = await call(client, "POST", SUBS, json=body(**overrides))
    assert status == 422
    assert error["code"] == "InvalidPayload"
    assert field in error["details"]


@pytest.mark.parametrize("missing", ["service", "event", "url"])
async def test_required_fields(client: aiohttp.ClientSession, missing: str) -> None:
    payload = body()
    del payload[missing]
    status, error = await call(client, "POST", SUBS, json=payload)
    assert status == 422
    assert error["details"][f".{missing}"] == ["is required"]


@pytest.mark.parametrize("settings", [dataclasses.replace(FAST, allow_http_urls=False)])
async def test_strict_url_rule_without_the_opt_in(client: aiohttp.ClientSession) -> None:
    for url in (
        "http://127.0.0.1:9000/hook",
        "http://hooks.example.org/bird",
        "https://127.0.0.1/bird",
        "https://localhost/bird",
    ):
        status, error = await call(client, "POST", SUBS, json=body(url=url))
        assert status == 422
        assert error["details"][".url"] == ["must be an https URL with a domain name"]
    status, _ = await call(client, "POST", SUBS, json=body(url="https://hooks.example.org:8443/b"))
    assert status == 201


async def test_local_http_urls_with_the_opt_in(client: aiohttp.ClientSession) -> None:
    for url in ("http://127.0.0.1:9000/hook", "http://localhost:8080/webhooks/bird"):
        status, created = await call(client, "POST", SUBS, json=body(url=url))
        assert status == 201
        assert created["url"] == url


async def test_at_most_five_with_the_same_filters(client: aiohttp.ClientSession) -> None:
    sms = [{"key": "platformId", "value": "sms"}]
    for _ in range(5):
        status, _ = await call(client, "POST", SUBS, json=body(eventFilters=sms))
        assert status == 201
    status, error = await call(client, "POST", SUBS, json=body(eventFilters=sms))
    assert (status, error["code"]) == (409, "SubscriptionLimitReached")
    # Another combination is still fine, and cannot be PATCHed into the full one.
    status, other = await call(client, "POST", SUBS, json=body())
    assert status == 201
    status, error = await call(client, "PATCH", f"{SUBS}/{other['id']}", json={"eventFilters": sms})
    assert status == 409


async def test_only_one_channel_id_filter(client: aiohttp.ClientSession) -> None:
    filters = [{"key": "channelId", "value": str(uuid.uuid4())} for _ in range(2)]
    status, error = await call(
        client, "POST", SUBS, json=body(event="sms.inbound", eventFilters=filters)
    )
    assert status == 422
    assert error["details"][".eventFilters"] == ["at most one channelId filter is allowed"]


async def test_list_pages(client: aiohttp.ClientSession) -> None:
    created = []
    for i in range(5):
        _, sub = await call(client, "POST", SUBS, json=body(url=f"https://h{i}.example.org/"))
        created.append(sub["id"])
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        status, page = await call(client, "GET", SUBS, params=params)
        assert status == 200
        assert len(page["results"]) <= 2
        seen += [s["id"] for s in page["results"]]
        if not page.get("nextPageToken"):
            break
        params["pageToken"] = page["nextPageToken"]
    assert seen == created
    status, _ = await call(client, "GET", SUBS, params={"limit": 101})
    assert status == 422


async def test_wrong_organization_or_workspace(client: aiohttp.ClientSession) -> None:
    wrong_org = f"/organizations/{uuid.uuid4()}/workspaces/{WS}/webhook-subscriptions"
    status, error = await call(client, "GET", wrong_org)
    assert (status, error["message"]) == (404, "organization not found")
    wrong_ws = f"/organizations/{ORG}/workspaces/{uuid.uuid4()}/webhook-subscriptions"
    status, error = await call(client, "POST", wrong_ws, json=body())
    assert (status, error["message"]) == (404, "workspace not found")


async def test_available_webhooks(client: aiohttp.ClientSession) -> None:
    status, page = await call(
        client, "GET", f"/workspaces/{WS}/available-webhooks", params={"service": "channels"}
    )
    assert status == 200
    [channels] = page["results"]
    assert channels["service"] == "channels"
    events = {e["name"]: e["filterKeys"] for e in channels["events"]}
    assert events["channel.created"] == ["platformId", "channelStatus"]
    assert events["sms.outbound"] == ["channelId", "messageStatus"]
    status, error = await call(
        client, "GET", f"/workspaces/{WS}/available-webhooks", params={"service": "x"}
    )
    assert status == 422
    assert "service" in error["details"]
    _, everything = await call(client, "GET", f"/workspaces/{WS}/available-webhooks")
    assert {r["service"] for r in everything["results"]} >= {"channels", "conversations"}


async def test_unknown_route_and_method(client: aiohttp.ClientSession) -> None:
    status, error = await call(client, "GET", "/workspaces/x/nothing-here")
    assert (status, error["code"]) == (404, "NotFound")
    status, error = await call(client, "PUT", SUBS, json=body())
    assert (status, error["code"]) == (405, "MethodNotAllowed")
