"""The simulator's control API under ``/_simulator`` (aiohttp): faults, logs, reset, workspaces.

Not part of Bird: no AccessKey, optionally guarded by ``admin_token`` (see edge.py).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from birdsim.edge import CONTROL_PREFIX, SIMULATOR, json_response, read_json
from birdsim.faults import FaultSettingsError, faults_from_json, parse_script
from birdsim.problems import ApiError, invalid_payload
from birdsim.runtime import Simulator
from birdsim.settings import FaultSettings
from birdsim.validation import is_uuid


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR]


def _fault_problems(problems: Sequence[str]) -> ApiError:
    details: dict[str, list[str]] = {}
    for problem in problems:
        field, _, message = problem.partition(": ")
        details.setdefault(field, []).append(message)
    return invalid_payload(details)


async def health(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def info(request: web.Request) -> web.Response:
    sim = _sim(request)
    s = sim.settings
    return json_response(
        {
            "organizationId": sim.state.organization_id,
            "workspaceIds": sim.state.workspaces,
            "installDelaySeconds": s.install_delay_s,
            "activateDelaySeconds": s.activate_delay_s,
            "rejectDuplicates": s.reject_duplicates,
            "allowHttpUrls": s.allow_http_urls,
        }
    )


async def list_requests(request: web.Request) -> web.Response:
    records = _sim(request).journal.query(request.query)
    return json_response({"results": [r.to_json() for r in records]})


async def clear_requests(request: web.Request) -> web.Response:
    _sim(request).journal.clear()
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    """Every delivery; filters: ``subscriptionId``, ``event``, ``executionStatus``."""
    sim, q = _sim(request), request.query
    found = [
        d.to_json()
        for d in sorted(sim.state.deliveries.values(), key=lambda d: d.seq)
        if _matches(q, "subscriptionId", d.subscription_id)
        and _matches(q, "event", d.event)
        and _matches(q, "executionStatus", d.execution_status)
    ]
    return json_response({"results": found})


def _matches(query: Mapping[str, str], name: str, value: str) -> bool:
    return name not in query or query[name] == value


async def reset(request: web.Request) -> web.Response:
    await _sim(request).reset()
    return web.Response(status=204)


async def set_channel_status(request: web.Request) -> web.Response:
    """``{"status": "inactive", "statusReason": "..."}`` -> the channel; emits channel.updated."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_payload({".": ["request body must be a JSON object"]})
    status, reason = body.get("status"), body.get("statusReason")
    details: dict[str, list[str]] = {}
    if not isinstance(status, str) or not status:
        details[".status"] = ["must be a non-empty string"]
    if reason is not None and not isinstance(reason, str):
        details[".statusReason"] = ["must be a string"]
    if details:
        raise invalid_payload(details)
    assert isinstance(status, str)
    event = _sim(request).set_channel_status(request.match_info["id"], status, reason)
    return json_response(event.payload)


async def get_faults(request: web.Request) -> web.Response:
    return json_response(_sim(request).faults.script_json())


async def put_faults(request: web.Request) -> web.Response:
    """Replace every fault setting; omitted ones take their defaults (no faults, Bird's limits)."""
    return await _set_faults(request, FaultSettings())


async def patch_faults(request: web.Request) -> web.Response:
    """Change only the given fault settings; a given ``script`` replaces the pending one."""
    plan = _sim(request).faults
    base = dataclasses.replace(plan.settings, script=tuple(plan.script))
    return await _set_faults(request, base)


async def _set_faults(request: web.Request, base: FaultSettings) -> web.Response:
    sim = _sim(request)
    try:
        faults = faults_from_json(await read_json(request), base)
    except FaultSettingsError as exc:
        raise _fault_problems(exc.problems) from None
    sim.faults.replace(faults)
    return json_response(sim.faults.script_json())


async def add_script(request: web.Request) -> web.Response:
    """Append scripted answers: one rule object or an array of them (see faults.parse_script)."""
    body: Any = await read_json(request)
    try:
        rules = parse_script(body if isinstance(body, list) else [body])
    except FaultSettingsError as exc:
        raise _fault_problems(exc.problems) from None
    sim = _sim(request)
    sim.faults.add_script(rules)
    return json_response(sim.faults.script_json())


async def clear_script(request: web.Request) -> web.Response:
    _sim(request).faults.script.clear()
    return web.Response(status=204)


async def list_workspaces(request: web.Request) -> web.Response:
    sim = _sim(request)
    return json_response(
        {"organizationId": sim.state.organization_id, "workspaceIds": sim.state.workspaces}
    )


async def add_workspace(request: web.Request) -> web.Response:
    """``{"workspaceId": "<uuid>"}`` (optional; a new uuid otherwise) -> 201."""
    body = await read_json(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise invalid_payload({".": ["request body must be a JSON object"]})
    workspace_id = body.get("workspaceId") or str(uuid.uuid4())
    if not is_uuid(workspace_id):
        raise invalid_payload({".workspaceId": ["must be a uuid"]})
    sim = _sim(request)
    sim.state.add_workspace(workspace_id)
    return json_response(
        {"organizationId": sim.state.organization_id, "workspaceId": workspace_id}, 201
    )


def add_control_routes(app: web.Application) -> None:
    r, p = app.router, CONTROL_PREFIX
    r.add_get(f"{p}/health", health)
    r.add_get(f"{p}/info", info)
    r.add_get(f"{p}/requests", list_requests)
    r.add_delete(f"{p}/requests", clear_requests)
    r.add_get(f"{p}/deliveries", list_deliveries)
    r.add_post(f"{p}/reset", reset)
    r.add_post(f"{p}/channels/{{id}}/status", set_channel_status)
    r.add_get(f"{p}/faults", get_faults)
    r.add_put(f"{p}/faults", put_faults)
    r.add_patch(f"{p}/faults", patch_faults)
    r.add_post(f"{p}/faults/script", add_script)
    r.add_delete(f"{p}/faults/script", clear_script)
    r.add_get(f"{p}/workspaces", list_workspaces)
    r.add_post(f"{p}/workspaces", add_workspace)
