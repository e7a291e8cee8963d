"""``bridge command``'s commands: the same --command-id gives the same command again."""

from __future__ import annotations

from typing import Any

import orjson

from bridge.command_tool import Answers, build_command
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


def result(command_id: str, event_id: str, status: str, action: str = "get") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": f"com.bird.bridge.connector.{action}.{status}",
        "subject": command_id,
        "data": {"commandId": command_id, "status": status, "connector": {"id": "conn-1"}},
    }


def test_a_replayed_result_is_printed_once_and_labelled() -> None:
    answers = Answers("c-1")
    earlier = [result("c-1", "r-1", "accepted", "create"), result("c-1", "r-2", "succeeded")]
    for event in [*earlier, result("c-2", "r-9", "failed")]:
        answers.seen_before_send(event)
    assert answers.final is None  # nothing is answered by what was there before the send

    replay = answers.lines(result("c-1", "r-2", "succeeded"))
    assert replay[0] == (
        "result com.bird.bridge.connector.get.succeeded  [replayed: the bridge answered from "
        "its ledger with the result it published earlier for this commandId (id r-2)]"
    )
    assert orjson.loads(replay[1])["status"] == "succeeded"
    assert answers.final == "succeeded"
    assert answers.connector_id == "conn-1"
    assert answers.lines(result("c-1", "r-2", "succeeded")) == []  # printed once


def test_new_results_are_printed_unlabelled_and_others_ignored() -> None:
    answers = Answers("c-1")
    answers.seen_before_send(result("c-1", "old", "failed"))
    assert answers.lines(result("c-2", "x", "succeeded")) == []
    accepted = answers.lines(result("c-1", "r-1", "accepted", "create"))
    assert accepted[0] == "result com.bird.bridge.connector.create.accepted"
    assert answers.final is None
    final = answers.lines(result("c-1", "r-2", "failed", "create"))
    assert final[0] == "result com.bird.bridge.connector.create.failed"
    assert answers.final == "failed"
