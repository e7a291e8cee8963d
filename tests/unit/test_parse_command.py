"""Command parsing (contract section 3): every refusal names its field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.commands.parse import CONNECTOR_FIELDS, MAX_ECHO, parse_command, read_command_id
from bridge.errors import InvalidCommand

CREATE: dict[str, Any] = {
    "commandId": "c-1",
    "action": "create",
    "workspaceId": "ws-1",
    "connector": {
        "connectorTemplateRef": "sms-messagebird:1",
        "name": "My SMS channel",
        "arguments": {"phoneNumberId": "p", "channelMessageType": "promotional"},
        "channelConversationalStatusEnabled": True,
    },
}


def parse(raw: Any, default: str | None = "ws-default") -> Any:
    value = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    return parse_command(value, default_workspace_id=default)


def test_create_is_parsed_with_its_bird_body() -> None:
    command = parse(CREATE)
    assert command.command_id == "c-1"
    assert command.action == "create"
    assert command.workspace_id == "ws-1"
    assert command.connector == CREATE["connector"]
    assert len(command.fingerprint) == 64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"commandId": "d", "action": "delete", "connectorId": "k"}, ("delete", "k", None)),
        ({"commandId": "g", "action": "get", "connectorId": "k"}, ("get", "k", None)),
        ({"commandId": "l", "action": "list"}, ("list", None, None)),
        (
            {"commandId": "l", "action": "list", "templateRef": "whatsapp:1"},
            ("list", None, "whatsapp:1"),
        ),
    ],
)
def test_other_actions(raw: dict[str, Any], expected: tuple[str, str | None, str | None]) -> None:
    command = parse(raw)
    assert (command.action, command.connector_id, command.template_ref) == expected
    assert command.workspace_id == "ws-default"


def test_fingerprint_ignores_key_order_and_extra_top_level_fields() -> None:
    reordered = dict(reversed(list(CREATE.items())))
    assert parse(CREATE).fingerprint == parse({**reordered, "traceId": "t"}).fingerprint
    changed = {**CREATE, "connector": {**CREATE["connector"], "name": "Other"}}
    assert parse(CREATE).fingerprint != parse(changed).fingerprint


@pytest.mark.parametrize(
    ("raw", "field", "reason", "command_id"),
    [
        (b"{", "$", "not valid JSON", None),
        (b"", "$", "not valid JSON", None),
        (b"[]", "$", "must be a JSON object, got list", None),
        ({"action": "list"}, "commandId", "is required", None),
        ({"commandId": "", "action": "list"}, "commandId", "1 to 128", None),
        ({"commandId": "x" * 129, "action": "list"}, "commandId", "1 to 128", None),
        ({"commandId": 7, "action": "list"}, "commandId", "must be a string", None),
        ({"commandId": "c"}, "action", "is required", "c"),
        ({"commandId": "c", "action": "update"}, "action", "must be one of", "c"),
        ({"commandId": "c", "action": "get"}, "connectorId", "is required", "c"),
        (
            {"commandId": "c", "action": "get", "connectorId": 5},
            "connectorId",
            "non-empty string",
            "c",
        ),
        (
            {"commandId": "c", "action": "get", "connectorId": "../x"},
            "connectorId",
            "must not contain",
            "c",
        ),
        ({"commandId": "c", "action": "list", "templateRef": ""}, "templateRef", "non-empty", "c"),
        ({"commandId": "c", "action": "create"}, "connector", "is required", "c"),
        (
            {"commandId": "c", "action": "create", "connector": []},
            "connector",
            "must be an object",
            "c",
        ),
        (
            {"commandId": "c", "action": "create", "connector": {"name": "n"}},
            "connector.connectorTemplateRef",
            "is required",
            "c",
        ),
        (
            {**CREATE, "connector": {**CREATE["connector"], "name": " "}},
            "connector.name",
            "is required",
            "c-1",
        ),
        (
            {**CREATE, "connector": {**CREATE["connector"], "extra": 1}},
            "connector.extra",
            "unknown field",
            "c-1",
        ),
        (
            {**CREATE, "connector": {**CREATE["connector"], "arguments": "x"}},
            "connector.arguments",
            "must be an object or null",
            "c-1",
        ),
        (
            {
                **CREATE,
                "connector": {**CREATE["connector"], "channelConversationalStatusEnabled": "yes"},
            },
            "connector.channelConversationalStatusEnabled",
            "must be true or false or null",
            "c-1",
        ),
        ({**CREATE, "workspaceId": 3}, "workspaceId", "non-empty string", "c-1"),
    ],
)
def test_invalid_commands_name_the_field(
    raw: Any, field: str, reason: str, command_id: str | None
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse(raw)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert caught.value.command_id == command_id


def test_missing_workspace_without_default() -> None:
    with pytest.raises(InvalidCommand, match="workspaceId: is required"):
        parse({"commandId": "c", "action": "list"}, default=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"commandId": "abc", "action": 1}', "abc"),
        (b'{"commandId": 5}', None),
        (b"not json", None),
        (None, None),
        (b'["commandId"]', None),
    ],
)
def test_read_command_id_is_best_effort(value: bytes | None, expected: str | None) -> None:
    assert read_command_id(value) == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"commandId": "c-1", "action": "x" * 1_000_000}, "action"),
        ({"commandId": "c-1", "action": {"k": "x" * 1_000_000}}, "action"),
        (
            {"commandId": "c-1", "action": "create", "connector": {"y" * 1_000_000: 1}},
            "connector." + "y" * MAX_ECHO + "... (999936 more characters)",
        ),
    ],
    ids=["long-action", "object-action", "long-unknown-field"],
)
def test_refusals_quote_producer_input_cut_short(raw: dict[str, Any], field: str) -> None:
    # A refusal goes into a failed result and a dead letter's header: it must stay small.
    with pytest.raises(InvalidCommand) as refused:
        parse(raw)
    assert refused.value.field == field
    assert len(refused.value.reason) < 300
    assert refused.value.command_id == "c-1"


@pytest.mark.parametrize(
    ("raw", "action"),
    [
        ({"commandId": "c", "action": "create", "connector": []}, "create"),
        ({"commandId": "c", "action": "get"}, "get"),
        ({"commandId": "c", "action": "list", "templateRef": ""}, "list"),
        ({"commandId": "c", "action": "update"}, None),
        ({"commandId": 5, "action": "delete"}, "delete"),
    ],
)
def test_a_refusal_carries_the_action_it_could_read(raw: Any, action: str | None) -> None:
    # The worker labels metrics and types the failed result with it, without decoding
    # the record again.
    with pytest.raises(InvalidCommand) as refused:
        parse(raw)
    assert refused.value.action == action


@pytest.mark.parametrize(
    ("connector", "field", "reason"),
    [
        ({"invitationToken": 5}, "connector.invitationToken", "must be a string or null"),
        ({"securityArguments": []}, "connector.securityArguments", "must be an object or null"),
        ({"name": 5}, "connector.name", "is required: a non-empty string"),
        ({"connectorTemplateRef": None}, "connector.connectorTemplateRef", "is required"),
    ],
)
def test_connector_field_types_are_birds(
    connector: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidCommand) as refused:
        parse({**CREATE, "connector": {**CREATE["connector"], **connector}})
    assert (refused.value.field, refused.value.command_id) == (field, "c-1")
    assert reason in refused.value.reason


def test_bird_gets_the_body_as_sent_explicit_nulls_kept_absent_fields_left_out() -> None:
    body = {"connectorTemplateRef": "t:1", "name": "n", "arguments": None}
    command = parse({"commandId": "c", "action": "create", "connector": body})
    assert command.connector == body
    assert "invitationToken" not in command.connector


def test_the_connector_fields_are_birds_create_connector_req() -> None:
    # bird-api.md 2.1; the simulator keeps its own list (birdsim/validation.py).
    assert set(CONNECTOR_FIELDS) == {
        "connectorTemplateRef",
        "name",
        "arguments",
        "securityArguments",
        "channelConversationalStatusEnabled",
        "invitationToken",
    }
