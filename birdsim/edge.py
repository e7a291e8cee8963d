"""The HTTP edge of the simulator (aiohttp): faults, auth, rate limits, errors, one log line.

Order for Bird routes: injected fault -> ``AccessKey`` auth -> per-workspace rate limit -> handler.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from birdsim.faults import FaultAction
from birdsim.journal import RequestRecord
from birdsim.problems import ApiError
from birdsim.runtime import Simulator
from birdsim.settings import Organization

log = structlog.get_logger("birdsim")

SIMULATOR = web.AppKey("simulator", Simulator)
CONTROL_PREFIX = "/_simulator"
_WORKSPACE_IN_PATH = re.compile(r"^(?:/organizations/[^/]+)?/workspaces/([^/]+)")
_STATUS_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    422: "InvalidPayload",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), error.status, error.headers or None)


def status_error(status: int, retry_after: int | None = None) -> ApiError:
    """A Bird-shaped error for an injected status."""
    code = _STATUS_CODES.get(status, "Error")
    message = re.sub(r"(?<!^)(?=[A-Z])", " ", code).lower() + " (simulated)"
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(status, code, message, headers=headers)


async def read_json(request: web.Request) -> object:
    """The parsed body; an empty body is ``None`` (then rejected by validation as not an object)."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "InvalidJson", "request body is not valid JSON") from None


def _organization_of(header: str, organizations: tuple[Organization, ...]) -> str | None:
    """The organization whose key ``Authorization: AccessKey <key>`` (bird-api.md 1) holds,
    or None; every key is compared, in constant time."""
    scheme, _, given = header.partition(" ")
    if scheme != "AccessKey" or not given:
        return None
    found: str | None = None
    for organization in organizations:
        for key in organization.access_keys:
            if hmac.compare_digest(given.encode(), key.encode()):
                found = organization.id
    return found


_ORGANIZATION_IN_PATH = re.compile(r"^/organizations/([^/]+)")


def _forbidden(sim: Simulator, path: str, organization: str) -> bool:
    """A key of one organization asking for another organization or its workspace: Bird
    decides permissions by the key's organization and policies (bird-api.md 1) and
    refuses with 403. What does not exist is left to the handler (404)."""
    in_path = _ORGANIZATION_IN_PATH.match(path)
    if in_path and in_path.group(1) != organization:
        known = {org.id for org in sim.settings.all_organizations()}
        return in_path.group(1) in known
    workspace = _WORKSPACE_IN_PATH.match(path)
    if workspace:
        owner = sim.state.owner_of(workspace.group(1))
        return owner is not None and owner != organization
    return False


async def _call(handler: Handler, request: web.Request) -> web.StreamResponse:
    """Run a handler, mapping every failure to a Bird-shaped error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:  # routing: unknown path (404) or method (405)
        if exc.status < 400:
            raise
        error = status_error(exc.status)
        if exc.status == 404:
            error = ApiError(404, "NotFound", "route not found")
        return error_response(error)
    except ConnectionResetError:
        raise  # the client is gone before its request was read: nothing was done
    except Exception:
        log.exception("handler failed", method=request.method, path=request.path)
        return error_response(ApiError(500, "InternalServerError", "internal error"))


async def _drop(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send the status line, headers and half the body, then close the socket."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or not body:
        # Nothing to cut in half (e.g. 204): close before answering at all.
        _abort(request)
        return web.Response()
    partial = web.StreamResponse(status=response.status)
    partial.content_type = response.content_type
    partial.content_length = len(body)
    await partial.prepare(request)
    await partial.write(body[: len(body) // 2])
    _abort(request)
    return partial


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def _apply(
    sim: Simulator, request: web.Request, handler: Handler, action: FaultAction
) -> tuple[web.StreamResponse, int | None, str | None, bool]:
    """The response, the status the client saw (None: no answer), the fault, processed?"""
    if action.delay_s > 0:
        await asyncio.sleep(action.delay_s)
    if action.kind == "reset":
        _abort(request)
        return web.Response(), None, action.source, False
    if action.kind == "timeout":
        await sim.hang(sim.faults.settings.hang_s)
        return error_response(status_error(504)), 504, action.source, False
    if action.kind == "status":
        error = status_error(action.status, action.retry_after)
        return error_response(error), action.status, action.source, False
    organization = _organization_of(
        request.headers.get("Authorization", ""), sim.settings.all_organizations()
    )
    if organization is None:
        error = ApiError(401, "Unauthorized", "missing or invalid access key")
        return error_response(error), 401, None, False
    if _forbidden(sim, request.path, organization):
        error = ApiError(403, "Forbidden", "the access key has no access to this resource")
        return error_response(error), 403, None, False
    match = _WORKSPACE_IN_PATH.match(request.path)
    loop = asyncio.get_running_loop()
    if match and not sim.faults.admit(match.group(1), request.method, loop.time()):
        error = ApiError(429, "TooManyRequests", "rate limit exceeded")
        return error_response(error), 429, "rate_limit", False
    try:
        response = await _call(handler, request)
    except ConnectionResetError:
        return web.Response(), None, "client_gone", False
    if action.kind == "drop":
        return await _drop(request, response), None, action.source, True
    return response, response.status, action.source, True


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    loop = asyncio.get_running_loop()
    started = loop.time()
    if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
        response = await _control(sim, request, handler)
        log.debug(
            "control request", method=request.method, path=request.path, status=response.status
        )
        return response
    at = sim.state.now()
    action = sim.faults.decide(request.method, request.path)
    status: int | None = None
    fault: str | None = None
    processed = False
    try:
        response, status, fault, processed = await _apply(sim, request, handler, action)
        return response
    finally:
        match = _WORKSPACE_IN_PATH.match(request.path)
        duration_ms = (loop.time() - started) * 1000
        sim.journal.add(
            RequestRecord(
                method=request.method,
                path=request.path,
                query=request.query_string,
                workspace_id=match.group(1) if match else None,
                status=status,
                at=at,
                duration_ms=duration_ms,
                fault=fault or (action.source if action.kind != "pass" else None),
                processed=processed,
                traceparent=request.headers.get("traceparent"),
                tracestate=request.headers.get("tracestate"),
            )
        )
        # Plain successes at debug: `bridge dev` polls a lot; faults and errors stand out.
        quiet = fault is None and status is not None and status < 400
        (log.debug if quiet else log.info)(
            "request",
            method=request.method,
            path=request.path,
            workspace_id=match.group(1) if match else None,
            status=status,
            duration_ms=round(duration_ms, 1),
            fault=fault,
        )


async def _control(sim: Simulator, request: web.Request, handler: Handler) -> web.StreamResponse:
    token = sim.settings.admin_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error_response(ApiError(401, "Unauthorized", "missing or invalid admin token"))
    return await _call(handler, request)
