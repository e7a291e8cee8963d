"""The pure cores of contract sections 10 and 11: the state fold decision, the
reconciliation plan, dead-letter selection, redrive headers and the loop guard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from bridge.commands.results import dead_letter_record
from bridge.dlq.select import (
    REDRIVE_COUNT,
    REDRIVEN_FROM,
    DeadLetter,
    Filters,
    describe,
    redrive_headers,
    verdict,
)
from bridge.ingest.normalize import normalize_event
from bridge.reconcile.plan import plan
from bridge.state.fold import (
    STATE_TYPE,
    Known,
    channel_event,
    decide,
    known_of,
    read_state,
    state_record,
)
from tests.cloudevents_helpers import read_with_sdk

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WS = "22222222-2222-4222-8222-222222222222"


def channel(cid: str, status: str, updated: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "platformId": "sms",
        "connectorId": f"conn-{cid}",
        "name": "Support",
        "identifier": "+31600000000",
        "status": status,
        "createdAt": "2026-12-01T10:00:00.000Z",
        "updatedAt": updated,
        **extra,
    }


def webhook_event(payload: dict[str, Any], event: str = "channel.updated") -> bytes:
    body = {"service": "channels", "event": event, "payload": payload}
    record = normalize_event(
        body,
        raw_body=orjson.dumps(body),
        request_id=f"req-{payload['id']}-{payload['updatedAt']}",
        default_workspace_id=WS,
        received_at=NOW,
        origin="webhook",
    )
    return record.value


# --- the fold decision ------------------------------------------------------------------


def test_fold_writes_the_first_state_of_a_channel() -> None:
    assert decide(None, Known("2026-12-01T10:00:00.000Z", "pending")) == "write"


def test_fold_never_moves_backwards() -> None:
    new = Known("2026-12-01T10:00:02.000Z", "active")
    old = Known("2026-12-01T10:00:01.000Z", "pending")
    assert decide(old, new) == "write"
    assert decide(new, old) == "older"  # an old update after a new one


def test_fold_compares_instants_not_text() -> None:
    # 11:00+01:00 is 10:00Z: the same instant, and text order would say otherwise.
    current = Known("2026-12-01T10:00:00.500Z", "active")
    assert decide(current, Known("2026-12-01T11:00:00.400+01:00", "inactive")) == "older"
    assert decide(current, Known("2026-12-01T11:00:00.600+01:00", "inactive")) == "write"


def test_fold_same_state_again_is_skipped_another_status_at_the_same_time_wins() -> None:
    current = Known("2026-12-01T10:00:00.000Z", "active")
    assert decide(current, Known("2026-12-01T10:00:00.000Z", "active")) == "same"
    assert decide(current, Known("2026-12-01T10:00:00.000Z", "inactive")) == "write"


def test_fold_cannot_order_a_state_without_updated_at() -> None:
    current = Known("2026-12-01T10:00:00.000Z", "active")
    assert decide(current, Known(None, "inactive")) == "unordered"
    assert decide(current, Known("yesterday", "inactive")) == "unordered"
    assert decide(None, Known(None, "inactive")) == "write"
    assert decide(Known("garbage", "x"), Known("2026-12-01T10:00:00Z", "y")) == "write"


def test_only_channel_events_with_a_channel_id_are_folded() -> None:
    assert channel_event(webhook_event(channel("c1", "active", "2026-12-01T10:00:00.000Z")))
    assert channel_event(b"not json") is None
    assert channel_event(None) is None
    other = orjson.dumps({"type": "com.bird.conversation.created", "subject": "x", "data": {}})
    assert channel_event(other) is None
    no_subject = orjson.dumps({"type": "com.bird.channel.updated", "data": {}})
    assert channel_event(no_subject) is None


def test_state_record_is_a_cloudevent_the_sdk_reads() -> None:
    event = channel_event(webhook_event(channel("c1", "active", "2026-12-01T10:00:01.000Z")))
    assert event is not None
    record = state_record(event)
    assert record.key == b"c1"
    parsed = read_with_sdk(record)
    assert parsed.get_type() == STATE_TYPE
    assert parsed.get_subject() == "c1"
    data = orjson.loads(record.value)["data"]
    assert data == event["data"]
    assert read_state(record.value) == ("c1", Known("2026-12-01T10:00:01.000Z", "active"))
    assert read_state(None) is None
    assert read_state(b"{}") is None


# --- the reconciliation plan ------------------------------------------------------------


def test_plan_publishes_new_and_changed_channels_only() -> None:
    channels = [
        channel("new", "pending", "2026-12-01T10:00:00.000Z"),
        channel("changed", "active", "2026-12-01T10:00:05.000Z"),
        channel("same", "active", "2026-12-01T10:00:00.000Z"),
        channel("behind", "inactive", "2026-12-01T09:00:00.000Z"),
        {"name": "no id"},
    ]
    known = {
        "changed": Known("2026-12-01T10:00:00.000Z", "pending"),
        "same": Known("2026-12-01T10:00:00.000Z", "active"),
        "behind": Known("2026-12-01T10:00:00.000Z", "active"),
    }
    result = plan(WS, channels, known, now=NOW)
    assert (result.seen, result.created, result.updated, result.unreadable) == (5, 1, 1, 1)
    events = [orjson.loads(r.value) for r in result.records]
    assert [(e["type"], e["subject"], e["id"]) for e in events] == [
        ("com.bird.channel.created", "new", "reconcile:new:2026-12-01T10:00:00.000Z"),
        ("com.bird.channel.updated", "changed", "reconcile:changed:2026-12-01T10:00:05.000Z"),
    ]
    for record, event in zip(result.records, events, strict=True):
        read_with_sdk(record)
        assert event["birdorigin"] == "reconcile"
        assert event["data"]["workspaceId"] == WS
        assert record.key == event["subject"].encode()


def test_plan_after_its_events_were_folded_finds_nothing() -> None:
    channels = [channel("c1", "active", "2026-12-01T10:00:05.000Z")]
    first = plan(WS, channels, {}, now=NOW)
    folded = {}
    for record in first.records:
        event = channel_event(record.value)
        assert event is not None
        folded[event["subject"]] = known_of(event["data"])
    assert plan(WS, channels, folded, now=NOW).records == []


def test_plan_events_equal_webhook_events_but_for_id_and_origin() -> None:
    payload = channel("c1", "active", "2026-12-01T10:00:05.000Z")
    from_webhook = orjson.loads(webhook_event(payload, event="channel.created"))
    from_reconcile = orjson.loads(plan(WS, [payload], {}, now=NOW).records[0].value)
    for name in ("id", "birdorigin"):
        from_webhook.pop(name), from_reconcile.pop(name)
    assert from_webhook == from_reconcile


# --- dead letters -----------------------------------------------------------------------


def letter(headers: dict[str, str], **kw: Any) -> DeadLetter:
    base = {
        "dlq-reason": "invalid_command: connector.name is required",
        "dlq-source-topic": "bird.connector-commands",
        "dlq-source-partition": "2",
        "dlq-source-offset": "17",
    }
    base.update(headers)
    values: dict[str, Any] = {
        "topic": "bird.dead-letter",
        "partition": 1,
        "offset": 5,
        "timestamp": 1_764_590_400_000,
        "key": b"cmd-1",
        "value": b'{"commandId":"cmd-1"}',
        "headers": (("traceparent", b"00-abc"), *((k, v.encode()) for k, v in base.items())),
    }
    values.update(kw)
    return DeadLetter(**values)


def test_filters_match_reason_substring_and_exact_source_topic() -> None:
    item = letter({})
    assert Filters().match(item)
    assert Filters(reason="CONNECTOR.NAME").match(item)
    assert not Filters(reason="timeout").match(item)
    assert Filters(source_topic="bird.connector-commands").match(item)
    assert not Filters(source_topic="bird.connector").match(item)


def test_redrive_headers_keep_originals_count_up_and_name_the_dead_letter() -> None:
    first = letter({})
    headers = redrive_headers(first)
    assert headers == (
        ("traceparent", b"00-abc"),
        (REDRIVE_COUNT, b"1"),
        (REDRIVEN_FROM, b"bird.dead-letter/1/5"),
    )
    again = letter({REDRIVE_COUNT: "2"})
    assert dict(redrive_headers(again))[REDRIVE_COUNT] == b"3"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({REDRIVE_COUNT: "3"}, "already redriven 3 times"),
        ({REDRIVE_COUNT: "junk"}, "already redriven"),
        ({"dlq-value-omitted": "too big"}, "dlq-value-omitted"),
        ({"dlq-headers-omitted": "4"}, "dlq-headers-omitted"),
        ({"dlq-source-topic": ""}, "no dlq-source-topic"),
    ],
)
def test_what_cannot_be_redriven_is_skipped_with_a_reason(
    headers: dict[str, str], why: str
) -> None:
    action, reason = verdict(letter(headers), max_redrives=3)
    assert action == "skip"
    assert why in reason


def test_below_the_maximum_is_redriven() -> None:
    assert verdict(letter({REDRIVE_COUNT: "2"}), max_redrives=3) == ("redrive", "")
    assert verdict(letter({}), max_redrives=1) == ("redrive", "")


def test_the_redrive_count_survives_the_next_dead_letter() -> None:
    redriven = redrive_headers(letter({REDRIVE_COUNT: "1"}))
    again = dead_letter_record(
        key=b"cmd-1",
        value=b"{}",
        headers=redriven,
        reason="invalid again",
        topic="bird.connector-commands",
        partition=0,
        offset=99,
        command_id="cmd-1",
    )
    headers = dict(again.headers)
    assert headers[REDRIVE_COUNT] == b"2"
    assert headers[REDRIVEN_FROM] == b"bird.dead-letter/1/5"
    assert headers["dlq-source-offset"] == b"99"  # the old dlq-source-* are replaced
    assert [k for k, _ in again.headers].count("dlq-source-offset") == 1
    assert verdict(letter({REDRIVE_COUNT: "2"}), max_redrives=2)[0] == "skip"


def test_describe_has_the_contract_fields() -> None:
    info = describe(letter({REDRIVE_COUNT: "1"}))
    assert {k: info[k] for k in ("partition", "offset", "key", "sourceTopic")} == {
        "partition": 1,
        "offset": 5,
        "key": "cmd-1",
        "sourceTopic": "bird.connector-commands",
    }
    assert (info["sourcePartition"], info["sourceOffset"], info["redriveCount"]) == (2, 17, 1)
    assert info["timestamp"] == 1_764_590_400_000
    assert info["reason"].startswith("invalid_command")


def test_the_progress_bar_is_drawn_on_a_terminal_only() -> None:
    import io
    import os

    from bridge.dlq.tool import progress_bar

    quiet = io.StringIO()
    bar = progress_bar(quiet, dry_run=False)
    assert bar.disable
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        bar = progress_bar(terminal, dry_run=True)
        assert not bar.disable
        bar.update(3)
        bar.close()
    assert b"checking" in os.read(leader, 4096)
    os.close(leader)
