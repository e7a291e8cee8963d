"""Connector commands (contract section 3): raw record bytes -> a validated ``Command``. Pure.

The value is decoded once (orjson), then checked against the typed messages of
bridge/messages.py (msgspec). Every refusal is an ``InvalidCommand`` naming the field
(a JSON path) and, when it could be read, the ``commandId`` (so the producer gets a
``failed`` result) and the ``action`` (for labels and the result's type).
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import orjson

from bridge.errors import InvalidCommand
from bridge.messages import (
    CONNECTOR_FIELDS,
    MAX_COMMAND_ID,
    CommandMessage,
    CreateMessage,
    DeleteMessage,
    Envelope,
    GetMessage,
    ListMessage,
)
from bridge.tracecontext import TraceContext

__all__ = [
    "ACTIONS",
    "CONNECTOR_FIELDS",
    "MAX_COMMAND_ID",
    "MAX_ECHO",
    "Command",
    "parse_command",
    "read_command_id",
]

Action = Literal["create", "delete", "get", "list"]
ACTIONS: tuple[Action, ...] = ("create", "delete", "get", "list")
MAX_ID = 128
MAX_ECHO = 64  # characters of producer input quoted back in a refusal

# What a value of each connector field must be, as a refusal says it.
_EXPECTED = {
    "arguments": "an object or null",
    "securityArguments": "an object or null",
    "channelConversationalStatusEnabled": "true or false or null",
    "invitationToken": "a string or null",
}


@dataclass(frozen=True)
class Command:
    command_id: str
    action: Action
    workspace_id: str
    connector_id: str | None = None
    template_ref: str | None = None
    connector: Mapping[str, Any] = field(default_factory=dict)  # the create body for Bird
    fingerprint: str = ""
    # Where the command's trace goes on (contract 13): its Bird requests and results carry
    # it. Set by the worker from the record's headers; not part of what the command asks.
    trace: TraceContext | None = field(default=None, compare=False)


def _echo(text: str) -> str:
    """Producer input quoted in a refusal, cut short: a refusal (its failed result, its
    dead letter's headers) must stay small whatever the record holds."""
    if len(text) <= MAX_ECHO:
        return text
    return f"{text[:MAX_ECHO]}... ({len(text) - MAX_ECHO} more characters)"


def read_command_id(value: bytes | None) -> str | None:
    """Best effort: the ``commandId`` of a record that may not be a valid command."""
    try:
        parsed = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return _command_id_of(parsed)


def _command_id_of(parsed: object) -> str | None:
    if isinstance(parsed, dict):
        command_id = parsed.get("commandId")
        if isinstance(command_id, str) and 0 < len(command_id) <= MAX_COMMAND_ID:
            return command_id
    return None


def _action_of(raw: Mapping[str, Any]) -> str | None:
    action = raw.get("action")
    return action if action in ACTIONS else None


def _identifier(value: str | None, name: str, command_id: str, action: str) -> str:
    if value is None:
        raise InvalidCommand(name, "is required", command_id, action=action)
    if not value.strip():
        raise InvalidCommand(name, "must be a non-empty string", command_id, action=action)
    if len(value) > MAX_ID:
        raise InvalidCommand(
            name, f"must be at most {MAX_ID} characters", command_id, action=action
        )
    if any(ch in value for ch in "/?#") or not value.isprintable():
        raise InvalidCommand(
            name,
            "must not contain '/', '?', '#' or control characters",
            command_id,
            action=action,
        )
    return value


def _refusal(
    error: msgspec.ValidationError, raw: Mapping[str, Any], command_id: str | None
) -> InvalidCommand:
    """msgspec's first problem as an ``InvalidCommand`` naming the field, in the words of
    contract section 3."""
    message, _, where = str(error).partition(" - at `")
    path = where.rstrip("`") or "$"
    field_name = path[2:] if path.startswith("$.") else ""
    missing = message.startswith("Object missing required field `")
    if missing:
        name = message.split("`")[1]
        field_name = f"{field_name}.{name}" if field_name else name
    action = _action_of(raw)

    def refuse(name: str, reason: str) -> InvalidCommand:
        return InvalidCommand(name, reason, command_id, action=action)

    if field_name == "commandId":
        if missing:
            return refuse("commandId", "is required")
        return refuse("commandId", f"must be a string of 1 to {MAX_COMMAND_ID} characters")
    if field_name == "action":
        if missing:
            return refuse("action", "is required")
        got = _echo(repr(raw.get("action")))
        return refuse("action", f"must be one of {', '.join(ACTIONS)}, got {got}")
    if field_name in ("workspaceId", "connectorId", "templateRef"):
        return refuse(field_name, "must be a non-empty string")
    if field_name == "connector":
        if missing:
            return refuse("connector", "is required for action create")
        if message.startswith("Object contains unknown field `"):
            body = raw.get("connector")
            unknown = next(k for k in body if k not in CONNECTOR_FIELDS)  # type: ignore[union-attr]
            allowed = ", ".join(CONNECTOR_FIELDS)
            return refuse(f"connector.{_echo(unknown)}", f"unknown field (allowed: {allowed})")
        return refuse("connector", "must be an object")
    name = field_name.removeprefix("connector.")
    if name in ("connectorTemplateRef", "name"):
        return refuse(field_name, "is required: a non-empty string")
    if name in _EXPECTED:
        return refuse(field_name, f"must be {_EXPECTED[name]}")
    return refuse(field_name or "$", message)  # not reached with today's messages


def _too_deep(connector: Mapping[str, Any]) -> str:
    for name, value in connector.items():
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return f"connector.{_echo(name)}"
    return "connector"


def parse_command(
    value: bytes | None,
    *,
    default_workspace_id: str | None,
    workspaces: Container[str] | None = None,
) -> Command:
    """Validate one command record's value; ``workspaces``: the ones a command may name
    (None: any)."""
    if value is None:
        raise InvalidCommand("$", "record has no value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidCommand("$", f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidCommand("$", f"must be a JSON object, got {type(raw).__name__}")
    try:
        command_id = msgspec.convert(raw, Envelope).command_id
    except msgspec.ValidationError as exc:
        raise _refusal(exc, raw, None) from None
    if command_id.startswith("\x00"):  # the ledger's own keys (ledger_state.INTERNAL_PREFIX)
        raise InvalidCommand("commandId", "must not start with a NUL character (reserved)")
    try:
        message: CommandMessage = msgspec.convert(raw, CommandMessage)
    except msgspec.ValidationError as exc:
        raise _refusal(exc, raw, command_id) from None
    return _command(message, default_workspace_id, workspaces)


def _command(
    message: CommandMessage, default_workspace_id: str | None, workspaces: Container[str] | None
) -> Command:
    command_id = message.command_id
    connector_id: str | None = None
    template_ref: str | None = None
    connector: dict[str, Any] = {}
    match message:
        case CreateMessage():
            action: Action = "create"
            connector = message.connector.to_bird()
        case DeleteMessage() | GetMessage():
            action = "delete" if isinstance(message, DeleteMessage) else "get"
        case ListMessage():
            action = "list"
            template_ref = message.template_ref

    if message.workspace_id is not None:
        workspace_id = _identifier(message.workspace_id, "workspaceId", command_id, action)
    elif default_workspace_id:
        workspace_id = default_workspace_id
    else:
        raise InvalidCommand(
            "workspaceId",
            "is required (no default workspace is configured)",
            command_id,
            action=action,
        )
    if workspaces is not None and workspace_id not in workspaces:
        raise InvalidCommand(
            "workspaceId",
            f"{_echo(workspace_id)!r} is not a workspace this bridge serves",
            command_id,
            action=action,
        )
    if isinstance(message, DeleteMessage | GetMessage):
        connector_id = _identifier(message.connector_id, "connectorId", command_id, action)

    essence = {
        "action": action,
        "workspaceId": workspace_id,
        "connectorId": connector_id,
        "templateRef": template_ref,
        "connector": connector,
    }
    try:
        canonical = orjson.dumps(essence, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # orjson reads 1024 levels of nesting but writes at most 254.
        raise InvalidCommand(
            _too_deep(connector), "nests too deeply", command_id, action=action
        ) from None
    return Command(
        command_id=command_id,
        action=action,
        workspace_id=workspace_id,
        connector_id=connector_id,
        template_ref=template_ref,
        connector=connector,
        fingerprint=hashlib.sha256(canonical).hexdigest(),
    )
