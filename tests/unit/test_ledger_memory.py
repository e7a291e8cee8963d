"""The ledger's memory: final entries are kept as their place in the topic, and forgotten
after the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest

from bridge import config as config_module
from bridge.commands.ledger import Ledger
from bridge.commands.ledger_state import Entry, LedgerDecodeError, LedgerState
from bridge.events import rfc3339
from bridge.kafka.publisher import Publisher

RESULT = orjson.dumps(
    {"specversion": "1.0", "id": "r-1", "subject": "c-1", "data": {"status": "succeeded"}}
)


def ledger(window_s: int = 3600) -> Ledger:
    config = config_module.load({"BRIDGE_COMMANDS_IDEMPOTENCY_WINDOW_S": str(window_s)})
    return Ledger(config, cast(Publisher, None))


def entry(command_id: str, started: datetime, **fields: Any) -> Entry:
    return Entry(command_id, "fp", "create", "started", rfc3339(started), **fields)


def test_a_final_entry_keeps_only_its_place_in_the_topic() -> None:
    now = datetime.now(UTC)
    final = entry("c-1", now).accepted({"id": "k-1", "big": "x" * 1000}, RESULT).final(RESULT)
    compact = final.compact((3, 41))
    assert compact.position == (3, 41)
    assert (compact.connector, compact.accepted_result, compact.final_result) == (None,) * 3
    assert (compact.command_id, compact.fingerprint, compact.connector_id) == ("c-1", "fp", "k-1")
    with pytest.raises(ValueError, match="compacted"):
        compact.to_json()  # writing it would lose the result


async def test_the_final_value_is_the_published_bytes() -> None:
    memory = ledger()
    final = entry("c-1", datetime.now(UTC)).final(RESULT)
    assert await memory.final_value(final) == RESULT
    assert await memory.final_value(entry("c-2", datetime.now(UTC))) is None


def test_final_entries_are_forgotten_after_the_window_others_are_kept() -> None:
    memory = LedgerState(window_s=3600)
    now = datetime.now(UTC)
    memory.apply(entry("old", now - timedelta(hours=2)).final(RESULT), (0, 1), now.timestamp())
    memory.apply(entry("pending", now - timedelta(hours=2)), (0, 2), now.timestamp())
    memory.apply(entry("fresh", now).final(RESULT), (0, 3), now.timestamp())
    assert set(memory.entries) == {"pending", "fresh"}
    assert memory.entries["fresh"].position == (0, 3)
    assert memory.entries["fresh"].final_result is None


def test_a_final_entry_is_forgotten_once_the_window_passes_later() -> None:
    memory = LedgerState(window_s=3600)
    start = datetime.now(UTC)
    memory.apply(entry("first", start).final(RESULT), (0, 1), start.timestamp())
    assert "first" in memory.entries
    # Two hours on, the next final entry written pushes the first one out.
    later = start + timedelta(hours=2)
    memory.apply(entry("second", later).final(RESULT), (0, 2), later.timestamp())
    assert set(memory.entries) == {"second"}


def test_records_read_from_the_topic() -> None:
    memory = LedgerState(window_s=3600)
    now = datetime.now(UTC)
    value = entry("c", now).to_json()
    memory.apply_record(b"\x00barrier", b"", (0, 0), now.timestamp())
    memory.apply_record(b"c", b"not json", (0, 1), now.timestamp())
    assert memory.entries == {}
    memory.apply_record(b"c", value, (0, 2), now.timestamp())
    assert memory.entries["c"].state == "started"
    memory.apply_record(b"c", None, (0, 3), now.timestamp())  # a tombstone
    assert memory.entries == {}


def test_states_only_move_forward() -> None:
    memory = LedgerState(window_s=3600)
    now = datetime.now(UTC)
    started = entry("c", now)
    memory.apply(started.final(RESULT), (1, 7), now.timestamp())
    memory.apply(started, (1, 5), now.timestamp())  # a late copy of an older state
    assert memory.entries["c"].state == "final"
    assert memory.entries["c"].position == (1, 7)


def test_a_record_written_before_results_were_kept_as_bytes_reads_the_same() -> None:
    # Earlier releases wrote the results as nested JSON objects (orjson): the bytes read
    # back are those published then, to the byte.
    result = {"specversion": "1.0", "subject": "c-1", "data": {"score": 0.1, "note": "café"}}
    old = orjson.dumps(
        {
            "commandId": "c-1",
            "fingerprint": "fp",
            "action": "create",
            "state": "final",
            "startedAt": "2026-12-01T12:00:00Z",
            "connectorId": "k-1",
            "connector": None,
            "acceptedResult": None,
            "finalResult": result,
        }
    )
    entry = Entry.from_json(old)
    assert entry.final_result == orjson.dumps(result)
    assert entry.accepted_result is None
    assert Entry.from_json(entry.to_json()) == entry


@pytest.mark.parametrize(
    "value",
    [
        b"{}",
        b'{"commandId": "c"}',
        b"[1]",
        b'{"commandId":"c","fingerprint":"f","action":"get","state":"done","startedAt":"t"}',
    ],
)
def test_a_record_that_is_no_entry_is_said_so(value: bytes) -> None:
    with pytest.raises(LedgerDecodeError):
        Entry.from_json(value)
