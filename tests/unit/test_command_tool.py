"""``bridge command``'s commands: the same --command-id gives the same command again."""

from __future__ import annotations

import orjson

from bridge.command_tool import build_command
from bridge.commands.parse import parse_command

WORKSPACE = "22222222-2222-4222-8222-222222222222"


def fingerprint(command: dict[str, object]) -> str:
    return parse_command(orjson.dumps(command), default_workspace_id=WORKSPACE).fingerprint


def test_the_same_command_id_builds_the_same_command() -> None:
    first = build_command("create", command_id="c-1", name="Shop")
    again = build_command("create", command_id="c-1", name="Shop")
    other = build_command("create", command_id="c-2", name="Shop")
    assert first == again
    assert fingerprint(first) == fingerprint(again)  # answered again, not refused as reused
    assert first["connector"]["arguments"] != other["connector"]["arguments"]


def test_without_a_command_id_each_command_is_new() -> None:
    assert build_command("create")["commandId"] != build_command("create")["commandId"]
