"""Several workspaces in two organizations (contract 12), against the simulator and the
real broker: subscriptions per workspace, webhooks verified with their own workspace's key,
commands with their own organization's access key."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    Organization,
    SimulatorSettings,
)
from bridge import config as config_module
from bridge.bird.client import BirdClient
from bridge.config import Config
from bridge.metrics import Metrics
from bridge.subscriptions import ensure_every_workspace
from tests.bridge_helpers import running_bridge
from tests.command_helpers import command_client, command_env, create_command
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import PUBLIC_URL, broker_env, read_topic

pytestmark = pytest.mark.integration

ORG_A, WS_A, KEY_A = DEFAULT_ORGANIZATION_ID, DEFAULT_WORKSPACE_ID, DEV_ACCESS_KEY
ORG_B = "33333333-3333-4333-8333-333333333333"
WS_B = "44444444-4444-4444-8444-444444444444"
KEY_B = "access-key-of-organization-b"
SIGN_A, SIGN_B, SIGN_B_OLD = "signing-key-ws-a", "signing-key-ws-b-new", "signing-key-ws-b-old"


def simulator(**overrides: Any) -> SimulatorServer:
    return SimulatorServer(
        SimulatorSettings(
            organizations=(Organization(ORG_B, (KEY_B,), (WS_B,)),),
            install_delay_s=0.1,
            activate_delay_s=0.2,
            **overrides,
        )
    )


def workspaces_file(tmp_path: Path, *extra: str) -> str:
    (tmp_path / "b.access").write_text(KEY_B + "\n")
    text = f"""
[[workspace]]
id = "{WS_A}"
organizationId = "{ORG_A}"
accessKey = "{KEY_A}"
signingKey = "{SIGN_A}"

[[workspace]]
id = "{WS_B}"
organizationId = "{ORG_B}"
accessKeyFile = "b.access"
signingKey = "{SIGN_B}"
signingKeyPrevious = "{SIGN_B_OLD}"
"""
    path = tmp_path / "workspaces.toml"
    path.write_text(text + "".join(extra))
    return str(path)


def several(env: dict[str, str], path: str) -> dict[str, str]:
    """``env`` for the workspaces file instead of the single-workspace keys."""
    for name in ("BRIDGE_BIRD_ACCESS_KEY", "BRIDGE_WEBHOOK_SIGNING_KEY"):
        env.pop(name, None)
    env.pop("BRIDGE_BIRD_WORKSPACE_ID", None)
    return {**env, "BRIDGE_WORKSPACES_FILE": path}


async def subscriptions(sim_url: str, org: str, ws: str, key: str) -> list[dict[str, Any]]:
    path = f"/organizations/{org}/workspaces/{ws}/webhook-subscriptions"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"AccessKey {key}"}) as session,
        session.get(sim_url + path, params={"limit": "100"}) as response,
    ):
        assert response.status == 200, await response.text()
        return list((await response.json())["results"])


async def test_ensure_subscribes_each_workspace_with_its_key_and_url(tmp_path: Path) -> None:
    async with simulator() as sim:
        env = {
            "BRIDGE_BIRD_API_URL": sim.url,
            "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
            "BRIDGE_WORKSPACES_FILE": workspaces_file(tmp_path),
        }
        config = config_module.load(env)
        async with BirdClient(config.bird, Metrics()) as bird:
            first = await ensure_every_workspace(config, bird, webhook_path="/webhooks/bird")
            again = await ensure_every_workspace(config, bird, webhook_path="/webhooks/bird")
        assert [r.summary() for r in first] == [
            f"workspace {WS_A}: created 2, updated 0, kept 0",
            f"workspace {WS_B}: created 2, updated 0, kept 0",
        ]
        assert [r.summary() for r in again] == [
            f"workspace {WS_A}: created 0, updated 0, kept 2",
            f"workspace {WS_B}: created 0, updated 0, kept 2",
        ]
        for org, ws, key, signing in ((ORG_A, WS_A, KEY_A, SIGN_A), (ORG_B, WS_B, KEY_B, SIGN_B)):
            found = await subscriptions(sim.url, org, ws, key)
            assert sorted(s["event"] for s in found) == ["channel.created", "channel.updated"]
            assert {s["url"] for s in found} == {f"{PUBLIC_URL}/{ws}"}
            assert {s["signingKey"] for s in found} == {signing}


def test_ensure_command_goes_on_past_a_failing_workspace_and_names_it(tmp_path: Path) -> None:
    """A third workspace whose key Bird refuses: the others are ensured, the exit is 1."""
    ws_c = str(uuid.uuid4())
    broken = f"""
[[workspace]]
id = "{ws_c}"
organizationId = "{ORG_B}"
accessKey = "access-key-bird-does-not-know"
signingKey = "signing-key-ws-c"
"""
    path = workspaces_file(tmp_path, broken)
    with SimulatorProcess() as sim_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
            "BRIDGE_BIRD_API_URL": sim_url,
            "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
            "BRIDGE_WORKSPACES_FILE": path,
            "BRIDGE_BIRD_RETRY_BASE_S": "0.01",
        }
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "subscriptions", "ensure"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    summaries = [line for line in result.stdout.splitlines() if line.count(":") == 1]
    assert summaries == [
        f"workspace {WS_A}: created 2, updated 0, kept 0",
        f"workspace {WS_B}: created 2, updated 0, kept 0",
    ]
    assert f"workspace {ws_c}: failed: list_subscriptions: Bird answered 401" in result.stdout
    assert result.stderr.strip().endswith(f"1 of 3 workspaces failed: {ws_c}")
    assert "access-key-bird-does-not-know" not in result.stdout + result.stderr


class SimulatorProcess:
    """The simulator as its own process (``bridge simulator``), for a test that runs the
    bridge's command line as a process too."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        script = (
            "import asyncio, sys\n"
            "from birdsim.server import SimulatorServer\n"
            "from birdsim.settings import Organization, SimulatorSettings\n"
            "async def main():\n"
            f"    s = SimulatorSettings(organizations=(Organization({ORG_B!r}, ({KEY_B!r},),"
            f" ({WS_B!r},)),))\n"
            f"    async with SimulatorServer(s, host='127.0.0.1', port={port}):\n"
            "        print('ready', flush=True)\n"
            "        await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


# --- ingest -----------------------------------------------------------------------------


def ingest_config(broker: Broker, path: str) -> Config:
    return config_module.load(several(broker_env(broker.bootstrap), path))


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_each_workspace_is_verified_with_its_own_key(broker: Broker, tmp_path: Path) -> None:
    config = ingest_config(broker, workspaces_file(tmp_path))
    accepted: list[str] = []
    async with running_bridge(config) as app:

        async def send(ws: str, key: str, body_ws: str | None = None) -> tuple[int, str]:
            fields = {"workspaceId": body_ws} if body_ws else {}
            raw, headers = delivery(channel_event(**fields), key=key, url=f"{PUBLIC_URL}/{ws}")
            status, text = await post(f"{app.url}/webhooks/bird/{ws}", raw, headers)
            if status == 204:
                accepted.append(headers["messagebird-request-id"])
            return status, text

        assert (await send(WS_A, SIGN_A))[0] == 204
        assert (await send(WS_B, SIGN_B, body_ws=WS_B))[0] == 204
        # Rotation in B: its previous key still works there, and only there.
        assert (await send(WS_B, SIGN_B_OLD))[0] == 204
        assert (await send(WS_A, SIGN_B_OLD))[0] == 401
        # Another workspace's key, or a body that names another workspace: 401.
        assert (await send(WS_B, SIGN_A))[0] == 401
        status, text = await send(WS_A, SIGN_A, body_ws=WS_B)
        assert (status, orjson.loads(text)["error"]) == (
            401,
            "the event names another workspace than the one it is signed for",
        )
        # A workspace this bridge does not serve, and the single-workspace path: 404.
        status, text = await send(str(uuid.uuid4()), SIGN_A)
        assert (status, orjson.loads(text)) == (404, {"error": "unknown workspace"})
        raw, headers = delivery(channel_event(), key=SIGN_A)
        status, text = await post(f"{app.url}/webhooks/bird", raw, headers)
        assert status == 404
        assert "/webhooks/bird/<workspaceId>" in orjson.loads(text)["error"]
    records = await read_topic(broker.bootstrap, config.topics.events, expect=3)
    events = {orjson.loads(r.value)["id"]: orjson.loads(r.value) for r in records}
    assert sorted(events) == sorted(accepted)
    sources = [events[request_id]["source"] for request_id in accepted]
    assert sources == [
        f"bird:workspaces/{WS_A}",
        f"bird:workspaces/{WS_B}",
        f"bird:workspaces/{WS_B}",
    ]


# --- commands ---------------------------------------------------------------------------


async def test_commands_use_the_access_key_of_their_workspace(
    broker: Broker, tmp_path: Path
) -> None:
    async with simulator() as sim:
        env = several(
            broker_env(broker.bootstrap, **command_env(sim.url)), workspaces_file(tmp_path)
        )
        config = config_module.load(env)
        async with running_bridge(config, ["commands"]), command_client(config) as client:
            in_a = {**create_command("In A"), "workspaceId": WS_A}
            in_b = {**create_command("In B"), "workspaceId": WS_B}
            unknown = {**create_command("Nowhere"), "workspaceId": str(uuid.uuid4())}
            missing = create_command("No workspace")
            results = [await client.run(command) for command in (in_a, in_b, unknown, missing)]
        journal = [
            (r["method"], r["workspaceId"], r["status"])
            for r in (await sim_requests(sim.url))
            if r["method"] == "POST"
        ]
    statuses = [r["data"]["status"] for r in results]
    assert statuses == ["succeeded", "succeeded", "failed", "failed"]
    assert results[0]["data"]["connector"]["name"] == "In A"
    assert results[1]["data"]["connector"]["name"] == "In B"
    for refused in results[2:]:
        error = refused["data"]["error"]
        assert error["code"] == "invalid_command"
        assert error["details"]["field"] == "workspaceId"
    # Each create went to its own workspace, with a key Bird accepted there (not 401/403).
    assert sorted(journal) == sorted([("POST", WS_A, 201), ("POST", WS_B, 201)])


async def sim_requests(url: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/_simulator/requests") as response,
    ):
        body = await response.json()
    return list(body["results"] if isinstance(body, dict) else body)


# --- a broken file ----------------------------------------------------------------------


def test_a_broken_workspaces_file_stops_start_up_naming_every_problem(tmp_path: Path) -> None:
    path = workspaces_file(
        tmp_path, '\n[[workspace]]\nid = "ws-c"\naccessKey = "k3y-ab"\nsigningKeyFile = "nope"\n'
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
        "BRIDGE_WORKSPACES_FILE": path,
        "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "BRIDGE_BIRD_ACCESS_KEY": "a-single-workspace-key",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    prefix = "bridge: invalid configuration: "
    where = f"BRIDGE_WORKSPACES_FILE ({path}): workspace #3 (id 'ws-c')"
    assert result.stderr.splitlines() == [
        f"{prefix}BRIDGE_BIRD_ACCESS_KEY: not used with BRIDGE_WORKSPACES_FILE; "
        "set it per workspace in that file",
        f"{prefix}{where}: organizationId: required",
        f"{prefix}{where}: accessKey: too short for a secret: at least 8 characters",
        f"{prefix}{where}: signingKeyFile: cannot read 'nope': No such file or directory",
    ]
    assert "k3y-ab" not in result.stderr
    assert "a-single-workspace-key" not in result.stderr
