"""Fault injection, rate limits and the control API over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import aiohttp
import pytest

from birdsim import SimulatorServer

from .conftest import FAST, WS, call, sms_connector

CONNECTORS = f"/workspaces/{WS}/connectors"
FAULTS = "/_simulator/faults"


async def set_faults(client: aiohttp.ClientSession, **faults: Any) -> dict[str, Any]:
    status, body = await call(client, "PATCH", FAULTS, json=faults)
    assert status == 200, body
    return dict(body)


async def test_script_answers_the_next_matching_requests_then_normal(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    status, faults = await call(
        client,
        "POST",
        f"{FAULTS}/script",
        json={"method": "POST", "path": "/workspaces/*/connectors", "responses": [429, 503]},
    )
    assert status == 200
    assert faults["script"][0]["path"] == "/workspaces/*/connectors"
    # A GET does not match the rule and does not consume it.
    assert (await call(client, "GET", CONNECTORS))[0] == 200
    answers = [(await call(client, "POST", CONNECTORS, json=sms_connector()))[0] for _ in range(3)]
    assert answers == [429, 503, 201]
    assert len(sim.simulator.state.connectors) == 1  # scripted answers were not processed
    _, faults = await call(client, "GET", FAULTS)
    assert faults["script"] == []
    _, log = await call(client, "GET", "/_simulator/requests", params={"method": "POST"})
    assert [(r["status"], r["fault"], r["processed"]) for r in log["results"]] == [
        (429, "script", False),
        (503, "script", False),
        (201, None, True),
    ]


async def test_script_429_with_and_without_retry_after(client: aiohttp.ClientSession) -> None:
    await call(
        client,
        "POST",
        f"{FAULTS}/script",
        json=[{"path": "/workspaces/*", "responses": [{"status": 429, "retry_after": 7}, 429]}],
    )
    async with client.get(CONNECTORS) as first:
        assert (first.status, first.headers.get("Retry-After")) == (429, "7")
        assert (await first.json())["code"] == "TooManyRequests"
    async with client.get(CONNECTORS) as second:
        assert second.status == 429
        assert "Retry-After" not in second.headers


async def test_throttle_rates(client: aiohttp.ClientSession) -> None:
    await set_faults(client, throttle_rate=1.0, retry_after_s=3)
    async with client.get(CONNECTORS) as response:
        assert (response.status, response.headers.get("Retry-After")) == (429, "3")
    await set_faults(client, throttle_rate=0.0, throttle_no_retry_after_rate=1.0)
    async with client.get(CONNECTORS) as response:
        assert response.status == 429
        assert "Retry-After" not in response.headers
    await set_faults(client, throttle_no_retry_after_rate=0.0)
    assert (await call(client, "GET", CONNECTORS))[0] == 200


async def test_error_rate(client: aiohttp.ClientSession) -> None:
    await set_faults(client, error_rate=1.0, error_status=502)
    status, error = await call(client, "POST", CONNECTORS, json=sms_connector())
    assert (status, error["code"]) == (502, "BadGateway")
    await set_faults(client, error_rate=0.5, error_status=503, seed=7)
    statuses = [(await call(client, "GET", CONNECTORS))[0] for _ in range(40)]
    assert set(statuses) == {200, 503}


async def test_rate_limit_per_workspace_rejects_unprocessed(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    _, added = await call(client, "POST", "/_simulator/workspaces", json={})
    other = f"/workspaces/{added['workspaceId']}/connectors"
    await set_faults(client, rate_limit_get_per_s=5, rate_limit_post_per_s=3)
    gets = await asyncio.gather(*(call(client, "GET", CONNECTORS) for _ in range(8)))
    assert sorted(s for s, _ in gets) == [200] * 5 + [429] * 3
    assert {b["code"] for s, b in gets if s == 429} == {"TooManyRequests"}
    assert (await call(client, "GET", other))[0] == 200  # another workspace has its own budget
    posts = await asyncio.gather(
        *(call(client, "POST", CONNECTORS, json=sms_connector(f"n{i}")) for i in range(5))
    )
    assert sorted(s for s, _ in posts) == [201] * 3 + [429] * 2
    assert len(sim.simulator.state.connectors) == 3  # the 429s were not processed
    await asyncio.sleep(1.0)
    assert (await call(client, "GET", CONNECTORS))[0] == 200  # the window moved on


async def test_latency(client: aiohttp.ClientSession) -> None:
    await set_faults(client, latency_s=0.2, latency_jitter_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await call(client, "GET", CONNECTORS))[0] == 200
    assert 0.2 <= loop.time() - started < 1.0
    _, log = await call(client, "GET", "/_simulator/requests")
    assert log["results"][-1]["durationMs"] >= 200


async def test_reset_closes_the_connection_without_processing(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    await set_faults(client, reset_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(client, "POST", CONNECTORS, json=sms_connector())
    assert sim.simulator.state.connectors == {}
    await set_faults(client, reset_rate=0.0)
    _, log = await call(client, "GET", "/_simulator/requests", params={"method": "POST"})
    assert [(r["status"], r["fault"]) for r in log["results"]] == [(None, "reset_rate")]


async def test_drop_processes_then_cuts_the_response(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    await call(client, "POST", f"{FAULTS}/script", json={"path": CONNECTORS, "responses": ["drop"]})
    with pytest.raises(aiohttp.ClientPayloadError):
        await call(client, "POST", CONNECTORS, json=sms_connector())
    # The connector exists although the client never saw the answer: the case that tempts a
    # naive client into creating it twice.
    assert len(sim.simulator.state.connectors) == 1


async def test_timeout_hangs_past_the_client_timeout(client: aiohttp.ClientSession) -> None:
    await call(
        client, "POST", f"{FAULTS}/script", json={"path": CONNECTORS, "responses": ["timeout"]}
    )
    with pytest.raises(TimeoutError):
        await call(client, "GET", CONNECTORS, timeout=aiohttp.ClientTimeout(total=0.3))
    assert (await call(client, "GET", CONNECTORS))[0] == 200


async def test_hanging_request_does_not_delay_shutdown() -> None:
    server = SimulatorServer(FAST)
    await server.start()
    async with aiohttp.ClientSession(base_url=server.url) as client:
        await call(client, "PATCH", FAULTS, json={"timeout_rate": 1.0})
        hanging = asyncio.ensure_future(call(client, "GET", CONNECTORS))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        await server.stop()
        assert asyncio.get_running_loop().time() - started < 1.0
        status, error = await hanging
        assert (status, error["code"]) == (504, "GatewayTimeout")


async def test_faults_put_replaces_and_patch_merges(client: aiohttp.ClientSession) -> None:
    await set_faults(client, latency_s=0.01, error_rate=0.1)
    merged = await set_faults(client, reset_rate=0.2)
    assert (merged["latency_s"], merged["error_rate"], merged["reset_rate"]) == (0.01, 0.1, 0.2)
    status, replaced = await call(client, "PUT", FAULTS, json={"timeout_rate": 0.3})
    assert status == 200
    assert (replaced["latency_s"], replaced["error_rate"], replaced["timeout_rate"]) == (0, 0, 0.3)
    assert replaced["rate_limit_get_per_s"] == 50.0
    status, error = await call(client, "PUT", FAULTS, json={"error_rate": 3, "bogus": 1})
    assert status == 422
    assert set(error["details"]) == {"bogus"}
    status, error = await call(client, "PATCH", FAULTS, json={"error_rate": 3})
    assert (status, error["details"]) == (422, {"error_rate": ["must be between 0 and 1"]})
    status, _ = await call(client, "DELETE", f"{FAULTS}/script")
    assert status == 204


async def test_control_reset_forgets_everything(
    client: aiohttp.ClientSession, sim: SimulatorServer
) -> None:
    await call(client, "POST", CONNECTORS, json=sms_connector())
    await call(client, "POST", "/_simulator/workspaces", json={"workspaceId": str(uuid.uuid4())})
    await set_faults(client, latency_s=0.5)
    assert (await call(client, "POST", "/_simulator/reset"))[0] == 204
    state = sim.simulator.state
    assert (state.connectors, state.channels, state.workspaces) == ({}, {}, [WS])
    _, faults = await call(client, "GET", FAULTS)
    assert faults["latency_s"] == 0
    _, log = await call(client, "GET", "/_simulator/requests")
    assert log["results"] == []
    await asyncio.sleep(0.15)  # the cancelled install does not come back
    assert sim.simulator.state.channels == {}


async def test_request_log_filters(client: aiohttp.ClientSession) -> None:
    await call(client, "GET", CONNECTORS)
    await call(client, "POST", CONNECTORS, json=sms_connector())
    await call(client, "GET", f"/workspaces/{WS}/channels")
    _, log = await call(
        client, "GET", "/_simulator/requests", params={"path": "/workspaces/*/connectors"}
    )
    assert [(r["method"], r["status"]) for r in log["results"]] == [("GET", 200), ("POST", 201)]
    record = log["results"][1]
    assert record["workspaceId"] == WS
    assert record["time"].endswith("Z")
    assert isinstance(record["timestamp"], float)
    assert (await call(client, "DELETE", "/_simulator/requests"))[0] == 204
    _, log = await call(client, "GET", "/_simulator/requests")
    assert log["results"] == []


@pytest.mark.parametrize("settings", [dataclasses.replace(FAST, admin_token="adm1n")])
async def test_admin_token_guards_the_control_api(sim: SimulatorServer) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as anonymous:
        status, error = await call(anonymous, "GET", FAULTS)
        assert (status, error["code"]) == (401, "Unauthorized")
        status, _ = await call(anonymous, "GET", FAULTS, headers={"Authorization": "Bearer adm1n"})
        assert status == 200


async def test_health_and_info(client: aiohttp.ClientSession) -> None:
    assert await call(client, "GET", "/_simulator/health") == (200, {"status": "ok"})
    status, info = await call(client, "GET", "/_simulator/info")
    assert status == 200
    assert info["workspaceIds"] == [WS]
    assert "accessKeys" not in info


async def test_the_request_log_keeps_the_trace_context_and_selects_by_trace_id(
    client: aiohttp.ClientSession,
) -> None:
    traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"traceparent": traced, "tracestate": "congo=t61rcWkgMzE"}
    assert (await call(client, "GET", CONNECTORS, headers=headers))[0] == 200
    assert (await call(client, "GET", CONNECTORS, headers={"traceparent": other}))[0] == 200
    assert (await call(client, "GET", CONNECTORS))[0] == 200
    _, log = await call(client, "GET", "/_simulator/requests")
    seen = [(r["traceparent"], r["tracestate"]) for r in log["results"]]
    assert seen == [(traced, "congo=t61rcWkgMzE"), (other, None), (None, None)]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    _, log = await call(client, "GET", "/_simulator/requests", params={"traceId": trace_id})
    assert [r["traceparent"] for r in log["results"]] == [traced]
