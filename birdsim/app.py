"""Bird API routes of the simulator (aiohttp) and ``create_app``; handlers stay thin.

Connectors: bird-api.md 2; channels: 3; webhook subscriptions, events and logs: 4.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from birdsim.catalog import SERVICES, available_webhooks
from birdsim.control import add_control_routes
from birdsim.edge import SIMULATOR, edge_middleware, json_response, read_json
from birdsim.faults import check_faults
from birdsim.loss_routes import add_loss_routes
from birdsim.model import EXECUTION_STATUSES, Channel, Connector, Delivery, Subscription
from birdsim.paging import paginate, parse_page_request
from birdsim.problems import Problems, invalid_parameters
from birdsim.runtime import Simulator
from birdsim.settings import InvalidSettings, SimulatorSettings
from birdsim.validation import parse_subscription, parse_subscription_patch

SUBSCRIPTIONS = "/organizations/{org}/workspaces/{ws}/webhook-subscriptions"


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR]


# -- connectors (bird-api.md 2) -----------------------------------------------------------------


async def create_connector(request: web.Request) -> web.Response:
    body = await read_json(request)
    connector = _sim(request).create_connector(request.match_info["ws"], body)
    return json_response(connector.to_json(), 201)


async def list_connectors(request: web.Request) -> web.Response:
    sim, ws = _sim(request), request.match_info["ws"]
    problems = Problems()
    page = parse_page_request(request.query, "connectors", max_limit=100, problems=problems)
    problems.raise_parameters()
    items = sim.state.list_connectors(ws, request.query.get("templateRef") or None)
    return json_response(paginate(items, page, "connectors", lambda c: c.seq, Connector.to_json))


async def get_connector(request: web.Request) -> web.Response:
    connector = _sim(request).state.get_connector(
        request.match_info["ws"], request.match_info["id"]
    )
    return json_response(connector.to_json())


async def delete_connector(request: web.Request) -> web.Response:
    _sim(request).delete_connector(request.match_info["ws"], request.match_info["id"])
    return web.Response(status=204)


# -- channels (bird-api.md 3) -------------------------------------------------------------------


async def list_channels(request: web.Request) -> web.Response:
    sim, ws = _sim(request), request.match_info["ws"]
    problems = Problems()
    page = parse_page_request(
        request.query, "channels", max_limit=1000, problems=problems, allow_reverse=True
    )
    problems.raise_parameters()
    channels = sim.state.list_channels(
        ws,
        statuses=_multi(request, "status"),
        platforms=_multi(request, "platform"),
    )
    return json_response(paginate(channels, page, "channels", lambda c: c.seq, Channel.to_json))


def _multi(request: web.Request, name: str) -> list[str]:
    """A filter given as repeated parameters and/or comma-separated values."""
    return [v for raw in request.query.getall(name, []) for v in raw.split(",") if v]


async def get_channel(request: web.Request) -> web.Response:
    channel = _sim(request).state.get_channel(request.match_info["ws"], request.match_info["id"])
    return json_response(channel.to_json())


# -- webhook subscriptions (bird-api.md 4) ------------------------------------------------------


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["org"], request.match_info["ws"]


async def create_subscription(request: web.Request) -> web.Response:
    sim = _sim(request)
    org, ws = _ids(request)
    sim.state.require_workspace(ws, org)
    parsed = parse_subscription(await read_json(request), allow_http=sim.settings.allow_http_urls)
    subscription = sim.state.create_subscription(org, ws, parsed)
    return json_response(subscription.to_json(), 201)


async def list_subscriptions(request: web.Request) -> web.Response:
    sim = _sim(request)
    problems = Problems()
    page = parse_page_request(request.query, "subscriptions", max_limit=100, problems=problems)
    problems.raise_parameters()
    items = sim.state.list_subscriptions(*_ids(request))
    return json_response(
        paginate(items, page, "subscriptions", lambda s: s.seq, Subscription.to_json)
    )


async def get_subscription(request: web.Request) -> web.Response:
    subscription = _sim(request).state.get_subscription(*_ids(request), request.match_info["id"])
    return json_response(subscription.to_json())


async def update_subscription(request: web.Request) -> web.Response:
    sim = _sim(request)
    current = sim.state.get_subscription(*_ids(request), request.match_info["id"])
    changes = parse_subscription_patch(
        await read_json(request),
        service=current.service,
        event=current.event,
        allow_http=sim.settings.allow_http_urls,
    )
    updated = sim.state.update_subscription(*_ids(request), current.id, changes)
    return json_response(updated.to_json())


async def delete_subscription(request: web.Request) -> web.Response:
    _sim(request).state.delete_subscription(*_ids(request), request.match_info["id"])
    return web.Response(status=204)


async def available_events(request: web.Request) -> web.Response:
    sim = _sim(request)
    sim.state.require_workspace(request.match_info["ws"])
    service = request.query.get("service") or None
    if service is not None and service not in SERVICES:
        raise invalid_parameters({"service": [f"must be one of {', '.join(SERVICES)}"]})
    return json_response({"results": available_webhooks(service)})


async def subscription_logs(request: web.Request) -> web.Response:
    """Delivery logs, one item per request id (bird-api.md 4.8)."""
    sim = _sim(request)
    subscription = sim.state.get_subscription(*_ids(request), request.match_info["id"])
    problems = Problems()
    page = parse_page_request(request.query, "logs", max_limit=100, problems=problems)
    status = request.query.get("executionStatus") or None
    if status is not None and status not in EXECUTION_STATUSES:
        problems.add("executionStatus", f"must be one of {', '.join(EXECUTION_STATUSES)}")
    problems.raise_parameters()
    deliveries = sim.state.subscription_logs(subscription, status)
    return json_response(paginate(deliveries, page, "logs", lambda d: d.seq, Delivery.log_json))


async def subscription_log_details(request: web.Request) -> web.Response:
    """One record per delivery attempt of ``requestId`` (bird-api.md 4.8)."""
    sim = _sim(request)
    subscription = sim.state.get_subscription(*_ids(request), request.match_info["id"])
    request_id = request.query.get("requestId")
    if not request_id:
        raise invalid_parameters({"requestId": ["is required"]})
    delivery = sim.state.delivery_for(subscription, request_id)
    return json_response({"results": [delivery.attempt_json(a) for a in delivery.attempts]})


def add_bird_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/workspaces/{ws}/connectors", create_connector)
    r.add_get("/workspaces/{ws}/connectors", list_connectors)
    r.add_get("/workspaces/{ws}/connectors/{id}", get_connector)
    r.add_delete("/workspaces/{ws}/connectors/{id}", delete_connector)
    r.add_get("/workspaces/{ws}/channels", list_channels)
    r.add_get("/workspaces/{ws}/channels/{id}", get_channel)
    r.add_get("/workspaces/{ws}/available-webhooks", available_events)
    r.add_post(SUBSCRIPTIONS, create_subscription)
    r.add_get(SUBSCRIPTIONS, list_subscriptions)
    r.add_get(SUBSCRIPTIONS + "/{id}", get_subscription)
    r.add_patch(SUBSCRIPTIONS + "/{id}", update_subscription)
    r.add_delete(SUBSCRIPTIONS + "/{id}", delete_subscription)
    r.add_get(SUBSCRIPTIONS + "/{id}/logs", subscription_logs)
    r.add_get(SUBSCRIPTIONS + "/{id}/logs/details", subscription_log_details)


def create_app(settings: SimulatorSettings | None = None) -> web.Application:
    """The simulator as an aiohttp application; its background work lives in ``cleanup_ctx``."""
    settings = settings or SimulatorSettings()
    problems = settings.problems() + [f"faults.{p}" for p in check_faults(settings.faults)]
    if problems:
        raise InvalidSettings(problems)
    app = web.Application(middlewares=[edge_middleware])
    app[SIMULATOR] = Simulator(settings)
    add_bird_routes(app)
    add_control_routes(app)
    add_loss_routes(app)
    app.on_shutdown.append(_release_hanging_requests)
    app.cleanup_ctx.append(_simulator_lifecycle)
    return app


async def _release_hanging_requests(app: web.Application) -> None:
    # on_shutdown runs before the server waits for in-flight requests to finish.
    app[SIMULATOR].stopping.set()


async def _simulator_lifecycle(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIMULATOR]
    await sim.start()
    yield
    await sim.close()
