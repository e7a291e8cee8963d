"""Several organizations in one simulator: each access key works in its own organization's
workspaces only, refused elsewhere the way Bird refuses (401 unknown key, 403 no access)."""

from __future__ import annotations

import aiohttp
import pytest

from birdsim import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    Organization,
    SimulatorServer,
    SimulatorSettings,
)

ORG_B = "33333333-3333-4333-8333-333333333333"
WS_B = "44444444-4444-4444-8444-444444444444"
KEY_B = "access-key-of-organization-b"
TWO = SimulatorSettings(organizations=(Organization(ORG_B, (KEY_B,), (WS_B,)),))
WS_A, KEY_A, ORG_A = DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY, DEFAULT_ORGANIZATION_ID


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        (KEY_A, f"/workspaces/{WS_A}/connectors", 200),
        (KEY_B, f"/workspaces/{WS_B}/connectors", 200),
        (KEY_A, f"/workspaces/{WS_B}/connectors", 403),
        (KEY_B, f"/workspaces/{WS_A}/connectors", 403),
        ("not-a-key-anywhere", f"/workspaces/{WS_A}/connectors", 401),
        (KEY_B, f"/organizations/{ORG_B}/workspaces/{WS_B}/webhook-subscriptions", 200),
        (KEY_A, f"/organizations/{ORG_B}/workspaces/{WS_B}/webhook-subscriptions", 403),
        # Its own organization, another organization's workspace: that workspace is not there.
        (KEY_A, f"/organizations/{ORG_A}/workspaces/{WS_B}/webhook-subscriptions", 403),
        (KEY_A, "/workspaces/55555555-5555-4555-8555-555555555555/connectors", 404),
    ],
)
async def test_a_key_works_in_its_own_organization_only(key: str, path: str, status: int) -> None:
    async with (
        SimulatorServer(TWO) as sim,
        aiohttp.ClientSession(headers={"Authorization": f"AccessKey {key}"}) as session,
        session.get(sim.url + path) as response,
    ):
        assert response.status == status, await response.text()


def test_organizations_must_not_share_keys_or_workspaces() -> None:
    shared = SimulatorSettings(
        organizations=(Organization(ORG_B, (DEV_ACCESS_KEY,), (DEFAULT_WORKSPACE_ID,)),)
    )
    assert shared.problems() == [
        "organizations: an access key belongs to two organizations",
        "organizations: a workspace belongs to two organizations",
    ]
