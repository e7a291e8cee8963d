"""Control API for lost webhooks (``loss.py``): ``GET``/``POST /_simulator/webhooks/loss``.

``POST {"next": N}`` loses the next N channel events' webhooks; ``{"all": true}`` loses
every one until ``{"all": false}``. Both answer the current setting and the count lost.
"""

from __future__ import annotations

from aiohttp import web

from birdsim.edge import CONTROL_PREFIX, SIMULATOR, json_response, read_json
from birdsim.problems import invalid_payload

LOSS_PATH = f"{CONTROL_PREFIX}/webhooks/loss"


async def get_loss(request: web.Request) -> web.Response:
    return json_response(request.app[SIMULATOR].loss.to_json())


async def set_loss(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_payload({".": ["request body must be a JSON object"]})
    details: dict[str, list[str]] = {}
    count, lose_all = body.get("next"), body.get("all")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        details[".next"] = ["must be a whole number >= 0"]
    if lose_all is not None and not isinstance(lose_all, bool):
        details[".all"] = ["must be true or false"]
    unknown = sorted(set(body) - {"next", "all"})
    for name in unknown:
        details[f".{name}"] = ["unknown field"]
    if details:
        raise invalid_payload(details)
    loss = request.app[SIMULATOR].loss
    if isinstance(count, int):
        loss.next_count = count
    if isinstance(lose_all, bool):
        loss.all = lose_all
    return json_response(loss.to_json())


def add_loss_routes(app: web.Application) -> None:
    app.router.add_get(LOSS_PATH, get_loss)
    app.router.add_post(LOSS_PATH, set_loss)
