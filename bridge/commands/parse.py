"""Connector commands (contract section 3): raw record bytes -> a validated ``Command``. Pure.

Every refusal is an ``InvalidCommand`` naming the field (a JSON path) and, when it
could be read, the ``commandId`` so the producer gets a ``failed`` result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from bridge.errors import InvalidCommand

Action = Literal["create", "delete", "get", "list"]
ACTIONS: tuple[Action, ...] = ("create", "delete", "get", "list")
MAX_COMMAND_ID = 128
MAX_ID = 128
MAX_ECHO = 64  # characters of producer input quoted back in a refusal

# Bird's CreateConnectorReq (bird-api.md 2.1, additionalProperties: false) and field types.
CONNECTOR_FIELDS: dict[str, tuple[type, ...]] = {
    "connectorTemplateRef": (str,),
    "name": (str,),
    "arguments": (dict, type(None)),
    "securityArguments": (dict, type(None)),
    "channelConversationalStatusEnabled": (bool, type(None)),
    "invitationToken": (str, type(None)),
}
_TYPE_NAMES = {str: "a string", dict: "an object", bool: "true or false", type(None): "null"}


@dataclass(frozen=True)
class Command:
    command_id: str
    action: Action
    workspace_id: str
    connector_id: str | None = None
    template_ref: str | None = None
    connector: Mapping[str, Any] = field(default_factory=dict)  # the create body for Bird
    fingerprint: str = ""


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
    if isinstance(parsed, dict):
        command_id = parsed.get("commandId")
        if isinstance(command_id, str) and 0 < len(command_id) <= MAX_COMMAND_ID:
            return command_id
    return None


def _identifier(raw: Mapping[str, Any], name: str, command_id: str | None) -> str:
    value = raw.get(name)
    if value is None:
        raise InvalidCommand(name, "is required", command_id)
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(name, "must be a non-empty string", command_id)
    if len(value) > MAX_ID:
        raise InvalidCommand(name, f"must be at most {MAX_ID} characters", command_id)
    if any(ch in value for ch in "/?#") or not value.isprintable():
        raise InvalidCommand(
            name, "must not contain '/', '?', '#' or control characters", command_id
        )
    return value


def _connector_body(raw: object, command_id: str) -> dict[str, Any]:
    if raw is None:
        raise InvalidCommand("connector", "is required for action create", command_id)
    if not isinstance(raw, dict):
        raise InvalidCommand("connector", "must be an object", command_id)
    for name in raw:
        if name not in CONNECTOR_FIELDS:
            allowed = ", ".join(CONNECTOR_FIELDS)
            raise InvalidCommand(
                f"connector.{_echo(name)}", f"unknown field (allowed: {allowed})", command_id
            )
    for name in ("connectorTemplateRef", "name"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidCommand(f"connector.{name}", "is required: a non-empty string", command_id)
    for name, types in CONNECTOR_FIELDS.items():
        if name in raw and not isinstance(raw[name], types):
            expected = " or ".join(_TYPE_NAMES[t] for t in types)
            raise InvalidCommand(f"connector.{name}", f"must be {expected}", command_id)
    return dict(raw)


def _too_deep(connector: Mapping[str, Any]) -> str:
    for name, value in connector.items():
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return f"connector.{_echo(name)}"
    return "connector"


def parse_command(value: bytes | None, *, default_workspace_id: str | None) -> Command:
    """Validate one command record's value. Unknown top-level fields are ignored (room for
    tracing metadata); unknown ``connector`` fields are refused since Bird would refuse them."""
    if value is None:
        raise InvalidCommand("$", "record has no value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidCommand("$", f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidCommand("$", f"must be a JSON object, got {type(raw).__name__}")

    command_id = raw.get("commandId")
    if command_id is None:
        raise InvalidCommand("commandId", "is required")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_COMMAND_ID:
        raise InvalidCommand("commandId", f"must be a string of 1 to {MAX_COMMAND_ID} characters")

    action = raw.get("action")
    if action is None:
        raise InvalidCommand("action", "is required", command_id)
    if action not in ACTIONS:
        raise InvalidCommand(
            "action", f"must be one of {', '.join(ACTIONS)}, got {_echo(repr(action))}", command_id
        )

    if raw.get("workspaceId") is not None:
        workspace_id = _identifier(raw, "workspaceId", command_id)
    elif default_workspace_id:
        workspace_id = default_workspace_id
    else:
        raise InvalidCommand(
            "workspaceId", "is required (no default workspace is configured)", command_id
        )

    connector_id: str | None = None
    template_ref: str | None = None
    connector: dict[str, Any] = {}
    if action == "create":
        connector = _connector_body(raw.get("connector"), command_id)
    elif action in ("delete", "get"):
        connector_id = _identifier(raw, "connectorId", command_id)
    elif raw.get("templateRef") is not None:
        template_ref = raw["templateRef"]
        if not isinstance(template_ref, str) or not template_ref:
            raise InvalidCommand("templateRef", "must be a non-empty string", command_id)

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
        raise InvalidCommand(_too_deep(connector), "nests too deeply", command_id) from None
    fingerprint = hashlib.sha256(canonical).hexdigest()
    return Command(
        command_id=command_id,
        action=action,
        workspace_id=workspace_id,
        connector_id=connector_id,
        template_ref=template_ref,
        connector=connector,
        fingerprint=fingerprint,
    )
