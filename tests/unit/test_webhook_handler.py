"""The webhook handler's refusals, outcome labels and log lines, on a real socket.

No Kafka: every request here is answered before anything is published, so the app is
the real middleware and handler with a producer that is never started.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bridge import errors
from bridge.app import BRIDGE, WEBHOOK_PATH, Bridge, request_log
from bridge.ingest.http import WebhookIngest
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_helpers import PUBLIC_URL, bridge_config

SNAKE_CASE = re.compile(r"[a-z]+(?:_[a-z]+)*")


def _error_classes(root: type[errors.BridgeError]) -> list[type[errors.BridgeError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _error_classes(sub)
    return found


def test_every_error_outcome_is_snake_case() -> None:
    outcomes = {cls.__name__: cls.outcome for cls in _error_classes(errors.BridgeError)}
    assert all(SNAKE_CASE.fullmatch(o) for o in outcomes.values()), outcomes
    assert outcomes["BadSignature"] == "bad_signature"
    assert outcomes["SignatureMismatch"] == "bad_signature"
    assert outcomes["PayloadTooLarge"] == "payload_too_large"
    assert outcomes["TooManyRequests"] == "too_many_requests"
    assert outcomes["PublishUnavailable"] == "unavailable"


@pytest.fixture
async def bridge_url() -> AsyncIterator[tuple[Bridge, str]]:
    config = bridge_config(
        "127.0.0.1:1", BRIDGE_WEBHOOK_MAX_BODY_BYTES="1024", BRIDGE_WEBHOOK_RATE_LIMIT_PER_S="50"
    )
    bridge = Bridge(config, ["ingest"])
    app = web.Application(middlewares=[request_log])
    app[BRIDGE] = bridge
    app.router.add_post(
        WEBHOOK_PATH, WebhookIngest(config, bridge.publisher, bridge.metrics).handle
    )
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield bridge, str(server.make_url(WEBHOOK_PATH))
    finally:
        await server.close()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


def webhook_outcomes(bridge: Bridge) -> dict[str, float]:
    text = bridge.metrics.render().decode()
    found = re.findall(r'^bridge_webhook_requests_total\{outcome="([^"]+)"\} (\S+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


async def test_refusals_are_counted_with_snake_case_outcomes(
    bridge_url: tuple[Bridge, str],
) -> None:
    bridge, url = bridge_url
    raw, headers = delivery(channel_event())
    wrong_raw, wrong_headers = delivery(channel_event(), key="not-the-key")
    missing = {k: v for k, v in headers.items() if k != "messagebird-signature"}
    big_raw, big_headers = delivery(b'{"x":"' + b"a" * 2048 + b'"}')
    not_json, not_json_headers = delivery(b"{nope")
    assert (await post(url, wrong_raw, wrong_headers))[0] == 401
    assert (await post(url, raw, missing))[0] == 401
    assert (await post(url, big_raw, big_headers))[0] == 413
    assert (await post(url, not_json, not_json_headers))[0] == 400
    assert webhook_outcomes(bridge) == {
        "bad_signature": 2.0,
        "payload_too_large": 1.0,
        "bad_payload": 1.0,
    }


def webhook_codes(bridge: Bridge) -> dict[str, float]:
    text = bridge.metrics.render().decode()
    found = re.findall(r'^bridge_webhook_responses_total\{code="([^"]+)"\} (\S+)$', text, re.M)
    return {code: float(value) for code, value in found}


async def test_answers_are_counted_by_status_code(bridge_url: tuple[Bridge, str]) -> None:
    """Beside the outcome, every webhook answer by its HTTP status: the 5xx share of
    webhooks needs the status, which several outcomes share. aiohttp's own answers count."""
    bridge, url = bridge_url
    raw, headers = delivery(channel_event())
    wrong_raw, wrong_headers = delivery(channel_event(), key="not-the-key")
    big_raw, big_headers = delivery(b'{"x":"' + b"a" * 2048 + b'"}')
    not_json, not_json_headers = delivery(b"{nope")
    assert (await post(url, wrong_raw, wrong_headers))[0] == 401
    assert (await post(url, wrong_raw, wrong_headers))[0] == 401
    assert (await post(url, big_raw, big_headers))[0] == 413
    assert (await post(url, not_json, not_json_headers))[0] == 400
    assert (await post(url, raw, headers))[0] == 503  # this bridge has no Kafka
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 405
    assert webhook_codes(bridge) == {"401": 2.0, "413": 1.0, "400": 1.0, "503": 1.0, "405": 1.0}
    assert sum(webhook_outcomes(bridge).values()) == 5  # the 405 has no outcome


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_content_type_does_not_refuse_and_a_mismatch_is_counted(
    bridge_url: tuple[Bridge, str], content_type: str | None
) -> None:
    """Signed non-JSON is 400 (the body decides); never 415. A wrong type is only counted."""
    bridge, url = bridge_url
    raw, headers = delivery(b"plain text, signed")
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, answer = await post(url, raw, headers)
    assert status == 400
    assert "not valid JSON" in answer
    text = bridge.metrics.render().decode()
    assert "bridge_webhook_content_type_mismatch_total 1.0" in text
    # An unsigned one is refused for its signature and not counted as a mismatch.
    raw, headers = delivery(b"plain text", key="not-the-key")
    headers["Content-Type"] = "text/plain"
    assert (await post(url, raw, headers))[0] == 401
    assert "bridge_webhook_content_type_mismatch_total 1.0" in bridge.metrics.render().decode()


async def test_an_empty_body_is_checked_like_any_other(bridge_url: tuple[Bridge, str]) -> None:
    """Content-Length: 0 reaches the signature check (it once got "body shorter than its
    Content-Length", hidden behind the content-type check that came first)."""
    _, url = bridge_url
    raw, headers = delivery(b"")
    status, answer = await post(url, raw, {**headers, "Content-Length": "0"})
    assert (status, "not valid JSON" in answer) == (400, True)
    raw, headers = delivery(b"", key="not-the-key")
    assert (await post(url, raw, {**headers, "Content-Length": "0"}))[0] == 401


async def test_json_content_type_is_not_a_mismatch(bridge_url: tuple[Bridge, str]) -> None:
    bridge, url = bridge_url
    for content_type in ("application/json", "application/json; charset=utf-8"):
        raw, headers = delivery(b"[1]")
        headers["Content-Type"] = content_type
        assert (await post(url, raw, headers))[0] == 400  # signed, JSON, not an object
    assert "bridge_webhook_content_type_mismatch_total 0.0" in bridge.metrics.render().decode()


async def test_a_signature_mismatch_logs_both_urls_and_never_the_key(
    bridge_url: tuple[Bridge, str],
) -> None:
    """The usual cause is a URL that differs from the one Bird signed (here a trailing
    slash): the warning shows the URL checked and the one the request came in on."""
    _, url = bridge_url
    raw, headers = delivery(channel_event(), url=PUBLIC_URL + "/", request_id="req-slash")
    with capture_logs() as logs:
        status, _ = await post(url, raw, headers)
    assert status == 401
    warnings = [e for e in logs if e["event"] == "webhook signature does not match"]
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning["log_level"] == "warning"
    assert warning["checked_url"] == PUBLIC_URL
    assert warning["request_url"] == url
    assert warning["host"] == url.split("/")[2]
    assert warning["request_id"] == "req-slash"
    assert "test-signing-key" not in repr(logs)
    # A missing signature is not a mismatch: no URL warning, one request line.
    missing = {k: v for k, v in headers.items() if k != "messagebird-signature"}
    with capture_logs() as logs:
        assert (await post(url, raw, missing))[0] == 401
    assert [e["event"] for e in logs] == ["webhook"]
    assert logs[0]["outcome"] == "bad_signature"
