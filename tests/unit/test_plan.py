"""The command core (bridge/commands/plan.py), one case per row of the replay table in
docs/guarantees.md ("What a command seen again does"), plus the look-up's matching rules
and what a poll of a create's channel means. Pure: each case runs in well under a
millisecond; tests/integration/test_commands*.py show the same on the real broker."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from bridge.commands import plan as core
from bridge.commands.ledger_state import Entry
from bridge.commands.parse import Command, parse_command
from bridge.events import rfc3339

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BODY = {"connectorTemplateRef": "sms-messagebird:1", "name": "Support", "arguments": {"a": "1"}}
RESULT = b'{"specversion":"1.0","subject":"c-1","data":{"status":"succeeded"}}'


def command(action: str = "create", command_id: str = "c-1", **fields: Any) -> Command:
    raw: dict[str, Any] = {"commandId": command_id, "action": action, **fields}
    if action == "create":
        raw.setdefault("connector", BODY)
    if action in ("get", "delete"):
        raw.setdefault("connectorId", "k-1")
    return parse_command(orjson.dumps(raw), default_workspace_id="ws")


def started(of: Command) -> Entry:
    return Entry(of.command_id, of.fingerprint, of.action, "started", rfc3339(NOW))


# --- the replay table, row by row -------------------------------------------------------


@pytest.mark.parametrize("action", ["create", "delete", "get", "list"])
def test_row_none_executes(action: str) -> None:
    planned = core.plan(command(action), None)
    assert planned == (core.Create() if action == "create" else core.Execute(None))


@pytest.mark.parametrize("action", ["create", "delete", "get", "list"])
def test_row_final_replays_the_stored_result(action: str) -> None:
    create = command(action)
    final = started(create).final(RESULT).compact((2, 40))
    assert core.plan(create, final) == core.Replay(final)


def test_row_accepted_resumes_following() -> None:
    create = command()
    accepted = started(create).accepted({"id": "k-1"}, RESULT)
    assert core.plan(create, accepted) == core.Resume(accepted)


def test_row_started_looks_at_bird_first() -> None:
    create = command()
    entry = started(create)
    assert core.plan(create, entry) == core.LookUp(entry)


@pytest.mark.parametrize("state", ["started", "accepted", "final"])
def test_row_other_fingerprint_is_refused_naming_commandid(state: str) -> None:
    first = command(connector={**BODY, "name": "first"})
    other = command(connector={**BODY, "name": "second"})
    entry = started(first)
    if state == "accepted":
        entry = entry.accepted({"id": "k-1"}, RESULT)
    elif state == "final":
        entry = entry.final(RESULT)
    planned = core.plan(other, entry)
    assert isinstance(planned, core.Refuse)
    assert planned.error.field == "commandId"
    assert planned.error.command_id == "c-1"
    assert "already used for a different command" in planned.error.reason


def test_an_accepted_entry_without_its_connector_is_looked_up() -> None:
    # Not written by this bridge, but a record can say so: nothing to follow, so look.
    create = command()
    entry = Entry("c-1", create.fingerprint, "create", "accepted", rfc3339(NOW))
    assert core.plan(create, entry) == core.LookUp(entry)


# --- the invalid-record rows ------------------------------------------------------------


def invalid_fingerprint(value: bytes) -> str:
    return "invalid:" + hashlib.sha256(value).hexdigest()


def test_invalid_record_never_seen_gets_its_failed_result_recorded() -> None:
    assert core.plan_invalid(invalid_fingerprint(b"{}"), None) == core.RecordRefusal()


def test_the_same_invalid_record_again_replays_its_result() -> None:
    fingerprint = invalid_fingerprint(b'{"commandId":"c-1"}')
    entry = Entry("c-1", fingerprint, "unknown", "final", rfc3339(NOW), final_result=RESULT)
    assert core.plan_invalid(fingerprint, entry) == core.Replay(entry)


def test_an_invalid_record_under_a_used_commandid_gets_no_result() -> None:
    entry = started(command())
    assert core.plan_invalid(invalid_fingerprint(b"{}"), entry) == core.Ignore()


def test_a_valid_command_under_an_invalid_records_commandid_is_a_reuse() -> None:
    fingerprint = invalid_fingerprint(b'{"commandId":"c-1"}')
    entry = Entry("c-1", fingerprint, "unknown", "final", rfc3339(NOW), final_result=RESULT)
    assert isinstance(core.plan(command(), entry), core.Refuse)


# --- matching a started create to Bird's connectors -------------------------------------


def connector(connector_id: str, created: datetime | str | None, **fields: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": connector_id,
        "name": BODY["name"],
        "arguments": BODY["arguments"],
    }
    if created is not None:
        found["createdAt"] = rfc3339(created) if isinstance(created, datetime) else created
    return {**found, **fields}


@pytest.mark.parametrize(
    ("candidate", "claimed", "adopted"),
    [
        (connector("k-1", NOW + timedelta(seconds=1)), set(), True),
        (connector("k-1", NOW - timedelta(seconds=90)), set(), True),  # within the skew
        (connector("k-1", NOW - timedelta(minutes=3)), set(), False),  # before the start
        (connector("k-1", NOW), {"k-1"}, False),  # another command's connector
        (connector("k-1", NOW, name="Other"), set(), False),
        (connector("k-1", NOW, arguments={"a": "2"}), set(), False),
        (connector("k-1", NOW, arguments=None), set(), True),  # Bird left them out
        (connector("k-1", NOW, arguments={}), set(), True),
        (connector("k-1", "yesterday-ish"), set(), True),  # no usable time: not ruled out
        (connector("k-1", None), set(), True),
        (connector("k-1", "2026-12-01T12:00:05"), set(), True),  # no zone: taken as UTC
    ],
    ids=[
        "after-start",
        "within-skew",
        "before-skew",
        "claimed",
        "other-name",
        "other-arguments",
        "null-arguments",
        "empty-arguments",
        "bad-time",
        "no-time",
        "naive-time",
    ],
)
def test_a_started_create_adopts_only_its_own_connector(
    candidate: dict[str, Any], claimed: set[str], adopted: bool
) -> None:
    found, count = core.find_started_create(BODY, rfc3339(NOW), [candidate], claimed)
    assert (found is candidate, count) == (adopted, int(adopted))


def test_the_oldest_match_is_adopted() -> None:
    newer = connector("k-2", NOW + timedelta(seconds=5))
    older = connector("k-1", NOW + timedelta(seconds=1))
    found, count = core.find_started_create(BODY, rfc3339(NOW), [newer, older], set())
    assert (found, count) == (older, 2)


# --- following a create -----------------------------------------------------------------

CONNECTOR = {"id": "k-1", "channel": {"channelId": "ch-1"}}


def test_an_active_channel_succeeds() -> None:
    channel = {"id": "ch-1", "status": "Active "}
    settled = core.settle(CONNECTOR, "ch-1", channel)
    assert settled == core.Settled(
        "succeeded", {"connector": CONNECTOR, "channel": channel}, "succeeded"
    )


def test_a_failed_channel_fails_with_birds_reason() -> None:
    channel = {"id": "ch-1", "status": "failed", "statusReason": "number revoked"}
    settled = core.settle(CONNECTOR, "ch-1", channel)
    assert settled is not None
    assert (settled.status, settled.outcome) == ("failed", "channel_failed")
    error = settled.fields["error"]
    assert error["code"] == "channel_failed"
    assert error["message"] == "channel ch-1 ended in status 'failed'"
    assert error["details"] == {"statusReason": "number revoked"}


@pytest.mark.parametrize("status", ["pending", "inactive", "preview", "", None, 3])
def test_other_statuses_keep_following(status: object) -> None:
    assert core.settle(CONNECTOR, "ch-1", {"id": "ch-1", "status": status}) is None


def test_a_timeout_names_the_last_status_seen() -> None:
    error = core.timed_out("k-1", {"status": "pending"}, 10.0)
    assert error["code"] == "timeout"
    assert error["retryable"] is True
    assert error["message"] == "connector k-1 not active within 10s (last status: pending)"
    assert "no channel yet" in core.timed_out("k-1", None, 1.5)["message"]


def test_following_needs_only_the_connector_id_and_channel() -> None:
    assert core.slim({**CONNECTOR, "big": "x" * 1000}) == CONNECTOR
    assert core.slim({"id": "k-2", "channel": {"channelId": ""}}) == {"id": "k-2"}
    assert core.channel_id_of({"channel": "ch-1"}) is None
