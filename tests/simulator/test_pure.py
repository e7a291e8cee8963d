"""The simulator's pure parts: validation, paging, rate limiter, fault decisions, state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from birdsim import FaultSettings, InvalidSettings, ScriptedResponse, ScriptRule, SimulatorSettings
from birdsim.app import create_app
from birdsim.delivery import build_headers, retry_delay
from birdsim.faults import (
    FaultPlan,
    FaultSettingsError,
    RateLimiter,
    faults_from_json,
    parse_script,
)
from birdsim.model import format_time
from birdsim.paging import (
    PageRequest,
    decode_token,
    encode_token,
    paginate,
    parse_page_request,
)
from birdsim.problems import ApiError, Problems
from birdsim.state import SimulatorState, install_outcome, make_identifier
from birdsim.validation import (
    check_url,
    parse_connector,
    parse_subscription,
    parse_subscription_patch,
)

from .conftest import PHONE_NUMBER_ID, sms_connector


def details_of(exc: pytest.ExceptionInfo[ApiError]) -> dict[str, list[str]]:
    assert exc.value.status == 422
    assert exc.value.code == "InvalidPayload"
    return exc.value.details


def test_connector_body_reports_every_bad_field_at_once() -> None:
    with pytest.raises(ApiError) as exc:
        parse_connector({"name": "", "connectorTemplateRef": "pigeon:1", "extra": 1})
    details = details_of(exc)
    assert set(details) == {".name", ".connectorTemplateRef", ".extra"}
    assert details[".extra"] == ['property "extra" is unsupported']


@pytest.mark.parametrize("body", [[], "x", 3, None])
def test_connector_body_must_be_an_object(body: object) -> None:
    with pytest.raises(ApiError) as exc:
        parse_connector(body)
    assert details_of(exc) == {".": ["request body must be a JSON object"]}


def test_sms_connector_requires_its_arguments() -> None:
    with pytest.raises(ApiError) as exc:
        parse_connector({"name": "a", "connectorTemplateRef": "sms-messagebird:1"})
    details = details_of(exc)
    assert details[".arguments.phoneNumberId"] == ["is required"]
    assert details[".arguments.channelMessageType"] == ["is required"]
    with pytest.raises(ApiError) as exc:
        parse_connector(sms_connector(phone_number_id="not-a-uuid"))
    assert details_of(exc) == {".arguments.phoneNumberId": ["must be a uuid"]}


def test_valid_connector_bodies_parse() -> None:
    parsed = parse_connector({**sms_connector(), "securityArguments": {"oauth": {"t": "x"}}})
    assert parsed.template_ref == "sms-messagebird:1"
    assert parsed.arguments == {
        "phoneNumberId": PHONE_NUMBER_ID,
        "channelMessageType": "transactional",
    }
    # Templates without documented arguments need none.
    assert parse_connector({"name": "wa", "connectorTemplateRef": "whatsapp:1"}).arguments is None


@pytest.mark.parametrize(
    ("url", "strict_ok", "relaxed_ok"),
    [
        ("https://hooks.example.org/bird", True, True),
        ("https://hooks.example.org:8443/bird?x=1", True, True),
        ("http://hooks.example.org/bird", False, True),
        ("https://127.0.0.1/bird", False, True),
        ("http://127.0.0.1:8080/webhooks/bird", False, True),
        ("http://localhost:8080/hook", False, True),
        ("https://localhost/hook", False, True),
        ("ftp://example.org/x", False, False),
        ("https://exa mple.org/x", False, False),
        ("https://example.org/x\n", False, False),
    ],
)
def test_webhook_url_rule(url: str, strict_ok: bool, relaxed_ok: bool) -> None:
    for allow_http, expected in ((False, strict_ok), (True, relaxed_ok)):
        problems = Problems()
        check_url(url, allow_http=allow_http, problems=problems)
        assert (not problems) is expected, (url, allow_http)


def test_subscription_body_rules() -> None:
    with pytest.raises(ApiError) as exc:
        parse_subscription({"service": "mail", "extra": True}, allow_http=False)
    assert set(details_of(exc)) == {".service", ".event", ".url", ".extra"}
    with pytest.raises(ApiError) as exc:
        parse_subscription(
            {
                "service": "channels",
                "event": "channel.updated",
                "url": "https://h.example.org/",
                "eventFilters": [{"key": "channelId", "value": "x"}, {"key": "platformId"}],
            },
            allow_http=False,
        )
    details = details_of(exc)
    assert details[".eventFilters[0].key"] == [
        'filter "channelId" is not supported for event "channel.updated"'
    ]
    assert details[".eventFilters[1].value"] == ["must be a string"]


def test_subscription_patch_rules() -> None:
    def patch(body: object) -> dict[str, list[str]]:
        with pytest.raises(ApiError) as exc:
            parse_subscription_patch(
                body, service="channels", event="channel.created", allow_http=False
            )
        return details_of(exc)

    assert patch({}) == {".": ["at least one property is required"]}
    assert patch({"event": "channel.updated"}) == {".event": ['property "event" cannot be changed']}
    assert patch({"status": "paused"}) == {".status": ["must be active or inactive"]}
    assert ".colour" in patch({"colour": "red"})
    changes = parse_subscription_patch(
        {"status": "inactive", "signingKey": "k2"},
        service="channels",
        event="channel.created",
        allow_http=False,
    )
    assert changes == {"status": "inactive", "signingKey": "k2"}


def test_page_tokens_round_trip_and_reject_foreign_tokens() -> None:
    token = encode_token("connectors", 7)
    assert decode_token("connectors", token) == 7
    for bad in ("%%%", encode_token("channels", 7), "bm90IGpzb24=", "x" * 9000):
        with pytest.raises(ValueError, match=r"token|long"):
            decode_token("connectors", bad)


def test_page_request_defaults_and_bounds() -> None:
    problems = Problems()
    assert parse_page_request({}, "x", max_limit=100, problems=problems) == PageRequest(10, None)
    assert not problems
    page = parse_page_request(
        {"limit": "1000", "reverse": "maybe"},
        "x",
        max_limit=1000,
        problems=problems,
        allow_reverse=True,
    )
    assert page.limit == 1000
    assert problems.details == {"reverse": ["must be true or false"]}


def test_numbers_subscriptions_take_no_filters() -> None:
    with pytest.raises(ApiError) as exc:
        parse_subscription(
            {
                "service": "numbers",
                "event": "number.updated",
                "url": "https://h.example.org/",
                "eventFilters": [{"key": "numberId", "value": "x"}],
            },
            allow_http=False,
        )
    assert details_of(exc) == {".eventFilters": ["the numbers service supports no event filters"]}


def test_paginate_walks_forward_and_backward() -> None:
    items = list(range(1, 8))

    def walk(reverse: bool) -> list[int]:
        seen: list[int] = []
        after = None
        while True:
            page = paginate(
                items, PageRequest(3, after, reverse), "n", lambda i: i, lambda i: {"v": i}
            )
            seen += [r["v"] for r in page["results"]]
            if "nextPageToken" not in page:
                return seen
            after = decode_token("n", page["nextPageToken"])

    assert walk(False) == items
    assert walk(True) == items[::-1]


def test_rate_limiter_is_a_sliding_window() -> None:
    limiter = RateLimiter()
    key = ("ws", "GET")
    assert [limiter.allow(key, 3, 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(key, 3, 0.99) is False
    assert limiter.allow(key, 3, 1.0) is True  # the first one left the window
    assert limiter.allow(("other", "GET"), 3, 0.5) is True  # per workspace
    assert limiter.allow(key, 0, 1.0) is True  # 0 disables
    # Below 1/s: one request per 1/rate seconds.
    assert limiter.allow(("slow", "POST"), 0.5, 0.0) is True
    assert limiter.allow(("slow", "POST"), 0.5, 1.9) is False
    assert limiter.allow(("slow", "POST"), 0.5, 2.0) is True


def test_script_answers_in_order_then_falls_through() -> None:
    rules = parse_script(
        [
            {
                "method": "post",
                "path": "/workspaces/*/connectors",
                "responses": [
                    429,
                    {"status": 503},
                    "reset",
                    "pass",
                    {"status": 429, "retry_after": 2},
                ],
            }
        ]
    )
    plan = FaultPlan(FaultSettings(script=rules))
    assert plan.decide("GET", "/workspaces/w/connectors").kind == "pass"
    decisions = [plan.decide("POST", "/workspaces/w/connectors") for _ in range(6)]
    assert [(d.kind, d.status, d.retry_after) for d in decisions] == [
        ("status", 429, None),
        ("status", 503, None),
        ("reset", 200, None),
        ("pass", 200, None),
        ("status", 429, 2),
        ("pass", 200, None),
    ]
    assert plan.script == []


def test_script_validation_names_the_field() -> None:
    with pytest.raises(FaultSettingsError) as exc:
        parse_script([{"path": "no-slash", "responses": [99, "explode", True]}])
    assert exc.value.problems == [
        "script[0].path: must be a path glob starting with /",
        "script[0].responses[0].status: must be an HTTP status",
        "script[0].responses[1].kind: must be one of status, reset, drop, timeout, pass",
        "script[0].responses[2]: must be a status, a kind or an object",
    ]


def test_fault_rates_are_seeded_and_validated() -> None:
    faults = faults_from_json({"error_rate": 0.5, "seed": 42}, FaultSettings())
    plan_a, plan_b = FaultPlan(faults), FaultPlan(faults)
    runs_a = [plan_a.decide("GET", "/x").status for _ in range(50)]
    runs_b = [plan_b.decide("GET", "/x").status for _ in range(50)]
    assert runs_a == runs_b
    assert 10 < runs_a.count(503) < 40
    with pytest.raises(FaultSettingsError) as exc:
        faults_from_json({"error_rate": 2, "nope": 1, "fail_installs": "yes"}, FaultSettings())
    assert set(exc.value.problems) == {
        "nope: unknown fault setting",
        "fail_installs: must be a boolean",
    }
    with pytest.raises(FaultSettingsError, match="error_rate: must be between 0 and 1"):
        faults_from_json({"error_rate": 2}, FaultSettings())


def test_latency_with_jitter_stays_in_range() -> None:
    plan = FaultPlan(FaultSettings(latency_s=0.1, latency_jitter_s=0.05, seed=1))
    delays = [plan.decide("GET", "/x").delay_s for _ in range(100)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert len(set(delays)) > 50


def test_install_outcome_triggers() -> None:
    assert install_outcome("SMS", fail_all=False, stuck_all=False) == "active"
    assert install_outcome("SMS [fail]", fail_all=False, stuck_all=False) == "inactive"
    assert install_outcome("SMS [stuck]", fail_all=False, stuck_all=False) == "stuck"
    assert install_outcome("SMS", fail_all=True, stuck_all=False) == "inactive"
    assert install_outcome("SMS", fail_all=False, stuck_all=True) == "stuck"


def test_identifier_comes_from_arguments_or_is_stable() -> None:
    assert make_identifier("whatsapp", {"phoneNumber": "+3161"}, "c1") == "+3161"
    generated = make_identifier("sms", {"phoneNumberId": PHONE_NUMBER_ID}, "c1")
    assert generated == make_identifier("sms", {"phoneNumberId": PHONE_NUMBER_ID}, "c2")
    assert generated.startswith("+316")
    assert len(generated) == 12
    assert make_identifier("email", None, "abcdef123456").endswith("@simulator.bird.test")


def test_state_install_steps_and_delete() -> None:
    ids = iter(f"00000000-0000-4000-8000-00000000000{i}" for i in range(10))
    clock = datetime(2025, 7, 5, 19, 8, 45, 650000, tzinfo=UTC)
    state = SimulatorState(
        organization_id="o", workspace_ids=["w"], now=lambda: clock, new_id=lambda: next(ids)
    )
    connector = state.create_connector("w", parse_connector(sms_connector()), "active")
    assert "channel" not in connector.to_json()
    created = state.install_channel(connector.id)
    assert created is not None
    assert (created.event, created.payload["status"]) == ("channel.created", "pending")
    assert created.payload["createdAt"] == "2025-07-05T19:08:45.650Z"
    assert state.install_channel(connector.id) is None  # only once
    updated = state.finish_install(connector.id)
    assert updated is not None
    assert (updated.event, updated.payload["status"]) == ("channel.updated", "active")
    assert connector.to_json()["channel"] == {"channelId": created.payload["id"], "platform": "sms"}
    state.delete_connector("w", connector.id)
    assert state.channels == {}
    with pytest.raises(ApiError, match="connector not found"):
        state.get_connector("w", connector.id)


def test_duplicate_rule_only_when_enabled() -> None:
    for reject in (False, True):
        state = SimulatorState(
            organization_id="o", workspace_ids=["w", "v"], reject_duplicates=reject
        )
        state.create_connector("w", parse_connector(sms_connector("a")), "active")
        state.create_connector("v", parse_connector(sms_connector("a")), "active")  # other ws
        if reject:
            with pytest.raises(ApiError) as exc:
                state.create_connector("w", parse_connector(sms_connector("b")), "active")
            assert (exc.value.status, exc.value.code) == (409, "ConnectorAlreadyExists")
        else:
            state.create_connector("w", parse_connector(sms_connector("b")), "active")
            assert len(state.list_connectors("w", None)) == 2


def test_retry_schedule_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert retry_delay(200, 1.0, 3600.0) == 3600.0


def test_headers_are_signed_only_with_a_key() -> None:
    signed = build_headers(
        request_id="r", timestamp="1", url="https://h.example.org/", body=b"{}", signing_key="k"
    )
    unsigned = build_headers(
        request_id="r", timestamp="1", url="https://h.example.org/", body=b"{}", signing_key=None
    )
    assert "messagebird-signature" in signed
    assert "messagebird-signature" not in unsigned
    assert unsigned["messagebird-request-id"] == "r"


def test_time_format_is_rfc3339_with_milliseconds() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert format_time(moment) == "2025-01-02T03:04:05.006Z"


def test_invalid_settings_are_reported_together() -> None:
    bad = SimulatorSettings(
        access_keys=(),
        install_delay_s=-1,
        delivery_max_attempts=37,
        faults=FaultSettings(reset_rate=1.5),
    )
    with pytest.raises(InvalidSettings) as exc:
        create_app(bad)
    assert exc.value.problems == [
        "access_keys: at least one non-empty key is required",
        "install_delay_s: must be >= 0",
        "delivery_max_attempts: must be in 1..36",
        "faults.reset_rate: must be between 0 and 1",
    ]
    assert "dev-access-key" not in repr(SimulatorSettings())


def test_script_rule_dataclass_is_usable_directly() -> None:
    rule = ScriptRule("GET", "/x", (ScriptedResponse("status", 418),))
    plan = FaultPlan(FaultSettings(script=(rule,)))
    assert plan.decide("GET", "/x").status == 418
    assert plan.decide("GET", "/x").kind == "pass"
