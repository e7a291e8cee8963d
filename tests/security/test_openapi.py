"""docs/openapi.yaml against the real bridge (ingest role) and the real broker.

Schemathesis generates requests from the document and checks every answer against it:
documented status codes, content types, headers and bodies, and no server error but the
documented 503. Most generated webhooks carry no valid signature (-> 401), so a second
test signs each generated body like Bird does to reach the 204 and 400 paths, and then
checks every acknowledged event is in Kafka.

Schemathesis calls are blocking (``requests``), so the bridge runs on its own event loop
in a background thread here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.core import NotSet
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.app import Bridge, build_app
from bridge.config import Config
from bridge.ingest.verify import sign
from bridge.kafka.embedded import free_port
from tests.bridge_helpers import running_bridge
from tests.kafka_cluster import Broker
from tests.kafka_helpers import PUBLIC_URL, SIGNING_KEY, bridge_config, read_topic

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)
T = TypeVar("T")


@dataclass
class LiveBridge:
    url: str
    config: Config
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the bridge's loop (from a blocking test) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def bridge_in_thread(config: Config, *, wait_ready: bool = True) -> Iterator[LiveBridge]:
    """The bridge on a loopback port, served from a thread with its own event loop."""
    started = threading.Event()
    url: list[str] = []
    errors: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        holder["stop"], holder["loop"] = stop, asyncio.get_running_loop()
        async with running_bridge(config, wait_ready=wait_ready) as app:
            url.append(app.url)
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by the caller, not lost in the thread
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="bridge-under-test", daemon=True)
    thread.start()
    assert started.wait(30), "the bridge did not start"
    assert not errors, errors
    try:
        yield LiveBridge(url[0], config, holder["loop"])
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(20)
    assert not thread.is_alive()
    assert not errors, errors


@pytest.fixture(scope="module")
def live_bridge(broker: Broker) -> Iterator[LiveBridge]:
    with bridge_in_thread(bridge_config(broker.bootstrap)) as live:
        yield live


def server_errors_only_503_with_retry_after(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """No 5xx but the documented 503, and that one always says when to retry."""
    if response.status_code >= 500:
        assert response.status_code == 503, f"server error {response.status_code}"
        if case.path == "/webhooks/bird":
            assert int(response.headers["retry-after"][0]) >= 1
    return None


# Answers match the document. For requests we build or re-sign ourselves.
CONFORMANCE = [
    server_errors_only_503_with_retry_after,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Plus: requests the document calls invalid are refused. For requests sent as generated.
CHECKS = [*CONFORMANCE, negative_data_rejection, missing_required_header]


def test_the_document_describes_exactly_the_served_routes(broker: Broker) -> None:
    documented = {
        (path, method.upper())
        for path, item in schema.raw_schema["paths"].items()
        for method in item
    }
    app = build_app(Bridge(bridge_config(broker.bootstrap), ["ingest", "commands"]))
    served = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert documented == served
    # Every operation loads (a broken reference or schema raises here).
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    labels = {result.ok().label for result in results if isinstance(result, Ok)}
    assert labels == {f"{method} {path}" for path, method in served}


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_conforms_to_the_document(case: Case[Any], live_bridge: LiveBridge) -> None:
    response = case.call_and_validate(base_url=live_bridge.url, checks=CHECKS, timeout=10)
    status = response.status_code
    if case.method.lower() not in schema.raw_schema["paths"][case.path]:
        # Schemathesis also tries undocumented methods: the server refuses them.
        assert status == 405, status
        assert response.headers["allow"]
    elif case.path == "/webhooks/bird":
        # Generated signatures never match: refused before the body is even parsed.
        assert status == 401, (status, response.text)
    else:
        assert status == 200, status


webhook = schema["/webhooks/bird"]["POST"]


def raw_body(case: Case[Any]) -> bytes:
    """The bytes schemathesis would send for this case's body, to sign them."""
    if isinstance(case.body, NotSet):
        return b""
    if isinstance(case.body, bytes):
        return case.body
    return json.dumps(case.body).encode()


def expected_status(sent: Mapping[str, str], raw: bytes) -> int:
    """What the bridge must answer to the request as it went out (negative cases may drop
    a header we set), following the documented order of checks. The content type is
    not one of them: the signature decides."""
    if "messagebird-signature" not in sent or "messagebird-request-timestamp" not in sent:
        return 401
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 400
    return 204 if isinstance(parsed, dict) else 400


def test_signed_generated_deliveries_are_published_or_refused_as_documented(
    live_bridge: LiveBridge,
) -> None:
    published: set[str] = set()
    statuses: set[int] = set()
    session = requests.Session()

    @given(
        case=st.one_of(
            webhook.as_strategy(generation_mode=GenerationMode.POSITIVE),
            webhook.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        ),
        number=st.integers(min_value=0, max_value=10**9),
    )
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def deliver(case: Case[Any], number: int) -> None:
        raw = raw_body(case)
        timestamp = str(1_751_742_552 + number)
        request_id = f"openapi-{uuid.uuid4()}"
        headers = {
            "messagebird-signature": sign(SIGNING_KEY, timestamp, PUBLIC_URL, raw),
            "messagebird-request-timestamp": timestamp,
            "messagebird-request-id": request_id,
        }
        if case.media_type is not None:
            headers["Content-Type"] = case.media_type
        response = case.call(
            base_url=live_bridge.url, session=session, headers=headers, data=raw, timeout=10
        )
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
        sent = CaseInsensitiveDict(
            {
                k: v if isinstance(v, str) else v.decode()
                for k, v in response.request.headers.items()
            }
        )
        assert response.status_code == expected_status(sent, raw), (raw[:200], sent)
        statuses.add(response.status_code)
        if response.status_code == 204:
            published.add(request_id)

    deliver()
    session.close()
    assert {204, 400} <= statuses
    records = live_bridge.run(
        read_topic(
            live_bridge.config.kafka.bootstrap_servers,
            live_bridge.config.topics.events,
            expect=len(published),
        )
    )
    ids = {orjson.loads(r.value)["id"] for r in records}
    assert ids == published


_CLIENTS = itertools.count()


def signed(body: bytes, **headers: str) -> dict[str, str]:
    timestamp = "1751742552"
    return {
        "Content-Type": "application/json",
        "messagebird-signature": sign(SIGNING_KEY, timestamp, PUBLIC_URL, body),
        "messagebird-request-timestamp": timestamp,
        "messagebird-request-id": str(uuid.uuid4()),
        # A client address of its own per request (the rate limit is per client): a
        # random one of 250 collided in about 6 % of the runs.
        "X-Forwarded-For": f"198.51.100.{next(_CLIENTS) % 250 + 1}",
        **headers,
    }


def answer(live: LiveBridge, body: Any, headers: dict[str, str]) -> requests.Response:
    """POST one webhook and check the answer against the document."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    case = webhook.Case(body=data, headers=headers, media_type="application/json")
    response = requests.post(live.url + "/webhooks/bird", data=data, headers=headers, timeout=10)
    case.validate_response(response, checks=CONFORMANCE, headers=headers)
    return response


def test_every_documented_webhook_status_conforms(broker: Broker) -> None:
    """Each documented answer, provoked on purpose, matches its description."""
    config = bridge_config(
        broker.bootstrap,
        BRIDGE_WEBHOOK_MAX_BODY_BYTES="1024",
        BRIDGE_WEBHOOK_RATE_LIMIT_PER_S="1",
        BRIDGE_WEBHOOK_TRUST_FORWARDED_FOR="true",
        BRIDGE_WEBHOOK_READ_TIMEOUT_S="0.5",
    )
    event = orjson.dumps({"service": "channels", "event": "channel.updated", "payload": {}})
    with bridge_in_thread(config) as live:
        assert answer(live, event, signed(event)).status_code == 204
        assert answer(live, b"[1]", signed(b"[1]")).status_code == 400
        wrong = signed(event, **{"messagebird-signature": sign("other", "1", PUBLIC_URL, event)})
        assert answer(live, event, wrong).status_code == 401
        big = b'{"x":"' + b"a" * 1024 + b'"}'
        assert answer(live, big, signed(big)).status_code == 413
        text = signed(event, **{"Content-Type": "text/plain"})
        assert answer(live, event, text).status_code == 204
        untyped = {k: v for k, v in signed(event).items() if k != "Content-Type"}
        assert answer(live, event, untyped).status_code == 204
        client = {"X-Forwarded-For": "203.0.113.9"}
        assert answer(live, event, signed(event, **client)).status_code == 204
        limited = answer(live, event, signed(event, **client))
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        assert limited.json() == {"error": "rate limit exceeded; retry after 1s"}


def test_without_kafka_webhooks_get_503_and_readiness_says_why() -> None:
    config = bridge_config(
        f"127.0.0.1:{free_port()}",
        BRIDGE_KAFKA_REQUEST_TIMEOUT_MS="1000",
        BRIDGE_WEBHOOK_RETRY_AFTER_S="7",
    )
    event = orjson.dumps({"service": "channels", "event": "channel.created", "payload": {}})
    with bridge_in_thread(config, wait_ready=False) as live:
        unavailable = answer(live, event, signed(event))
        assert unavailable.status_code == 503
        assert unavailable.headers["Retry-After"] == "7"
        assert "Kafka" in unavailable.json()["error"]
        readyz = requests.get(live.url + "/readyz", timeout=10)
        schema["/readyz"]["GET"].Case().validate_response(readyz, checks=CONFORMANCE)
        assert readyz.status_code == 503
        assert readyz.json() == {"status": "not ready", "reason": "not connected to Kafka"}
        healthz = requests.get(live.url + "/healthz", timeout=10)
        schema["/healthz"]["GET"].Case().validate_response(healthz, checks=CONFORMANCE)
        assert healthz.json() == {"status": "alive"}
