"""The ledger's memory: final entries are kept compact, and forgotten after the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson

from bridge import config as config_module
from bridge.commands.ledger import Entry, Ledger
from bridge.events import rfc3339
from bridge.kafka.publisher import Publisher

RESULT = {"specversion": "1.0", "id": "r-1", "subject": "c-1", "data": {"status": "succeeded"}}


def ledger(window_s: int = 3600) -> Ledger:
    config = config_module.load({"BRIDGE_COMMANDS_IDEMPOTENCY_WINDOW_S": str(window_s)})
    return Ledger(config, cast(Publisher, None))


def entry(command_id: str, started: datetime, **fields: Any) -> Entry:
    return Entry(command_id, "fp", "create", "started", rfc3339(started), **fields)


def test_a_final_entry_keeps_only_the_published_bytes() -> None:
    now = datetime.now(UTC)
    final = entry("c-1", now).accepted({"id": "k-1", "big": "x" * 1000}, RESULT).final(RESULT)
    compact = final.compact()
    assert compact.connector is None
    assert compact.accepted_result is None
    assert compact.final_result is None
    assert compact.final_value() == final.final_value() == orjson.dumps(RESULT)
    # Written back to the topic, it is the same JSON as the full entry's.
    assert orjson.loads(compact.to_json())["finalResult"] == RESULT


def test_final_entries_are_forgotten_after_the_window_others_are_kept() -> None:
    memory = ledger(window_s=3600)
    now = datetime.now(UTC)
    memory._remember(entry("old", now - timedelta(hours=2)).final(RESULT))
    memory._remember(entry("pending", now - timedelta(hours=2)))
    memory._remember(entry("fresh", now).final(RESULT))
    assert set(memory.entries) == {"pending", "fresh"}
    assert memory.entries["fresh"].final_value() == orjson.dumps(RESULT)


def test_states_only_move_forward() -> None:
    memory = ledger()
    now = datetime.now(UTC)
    started = entry("c", now)
    memory._remember(started.final(RESULT))
    memory._remember(started)  # a late copy of an older state
    assert memory.entries["c"].state == "final"
