"""The ledger's memory: an index of where each command's latest record is, final ones
forgotten after the window, a few dozen bytes a command."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest

from bridge import config as config_module
from bridge.commands.ledger import Ledger
from bridge.commands.ledger_state import ClaimedConnectors, Entry, LedgerDecodeError, LedgerState
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
    assert len(memory) == 2
    assert memory.locate("old") is None
    assert memory.locate("pending") == (0, 2)
    assert memory.locate("fresh") == (0, 3)


def test_a_final_entry_is_forgotten_once_the_window_passes_later() -> None:
    memory = LedgerState(window_s=3600)
    start = datetime.now(UTC)
    first = entry("first", start).accepted({"id": "k-1"}, RESULT).final(RESULT)
    memory.apply(first, (0, 1), start.timestamp())
    assert memory.locate("first") == (0, 1)
    assert memory.is_claimed("k-1")
    # Two hours on, the next final entry written pushes the first one out, and its claim.
    later = start + timedelta(hours=2)
    memory.apply(entry("second", later).final(RESULT), (0, 2), later.timestamp())
    assert (memory.locate("first"), memory.locate("second")) == (None, (0, 2))
    assert not memory.is_claimed("k-1")
    assert len(memory) == 1


def test_an_entry_read_back_after_its_window_counts_as_forgotten() -> None:
    memory = LedgerState(window_s=3600)
    now = datetime.now(UTC)
    final = entry("c", now - timedelta(minutes=59)).final(RESULT)
    assert not memory.expired(final, now.timestamp())
    assert memory.expired(final, (now + timedelta(minutes=2)).timestamp())
    started = entry("s", now - timedelta(days=30))
    assert not memory.expired(started, now.timestamp())  # only final entries expire


def test_records_read_from_the_topic() -> None:
    memory = LedgerState(window_s=3600)
    now = datetime.now(UTC)
    value = entry("c", now).to_json()
    memory.apply_record(b"\x00barrier", b"", (0, 0), now.timestamp())
    memory.apply_record(b"c", b"not json", (0, 1), now.timestamp())
    memory.apply_record(b"other", value, (0, 2), now.timestamp())  # key is not its commandId
    assert len(memory) == 0
    memory.apply_record(b"c", value, (0, 3), now.timestamp())
    assert memory.locate("c") == (0, 3)
    accepted = entry("c", now).accepted({"id": "k-9"}, RESULT).to_json()
    memory.apply_record(b"c", accepted, (2, 4), now.timestamp())
    assert memory.locate("c") == (2, 4)
    assert memory.is_claimed("k-9")
    assert "k-9" in ClaimedConnectors(memory)
    assert "k-8" not in ClaimedConnectors(memory)
    memory.apply_record(b"c", None, (0, 5), now.timestamp())  # a tombstone
    assert memory.locate("c") is None
    assert len(memory) == 0


def test_states_only_move_forward() -> None:
    memory = LedgerState(window_s=3600)
    now = datetime.now(UTC)
    started = entry("c", now)
    memory.apply(started.final(RESULT), (1, 7), now.timestamp())
    memory.apply(started, (1, 5), now.timestamp())  # a late copy of an older state
    assert memory.locate("c") == (1, 7)
    memory.apply_record(b"c", started.to_json(), (1, 9), now.timestamp())
    assert memory.locate("c") == (1, 7)


def test_a_record_of_an_earlier_release_is_indexed() -> None:
    old = orjson.dumps(
        {
            "commandId": "c-1",
            "fingerprint": "fp",
            "action": "create",
            "state": "final",
            "startedAt": rfc3339(datetime.now(UTC)),
            "connectorId": "k-1",
            "connector": None,
            "acceptedResult": None,
            "finalResult": {"specversion": "1.0", "data": {"note": "café"}},
        }
    )
    memory = LedgerState(window_s=3600)
    memory.apply_record(b"c-1", old, (4, 11), datetime.now(UTC).timestamp())
    assert memory.locate("c-1") == (4, 11)
    assert memory.is_claimed("k-1")


def test_memory_per_finished_command_is_a_few_dozen_bytes() -> None:
    # The index of 10,000 final entries, measured: it was 592 bytes a command with an
    # entry object per command.
    memory = LedgerState(window_s=7 * 24 * 3600)
    now = datetime.now(UTC)
    values = [
        entry(f"cmd-{n:07d}", now).accepted({"id": f"k-{n}"}, RESULT).final(RESULT)
        for n in range(10_000)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, final in enumerate(values):
            memory.apply(final, (n % 6, n), now.timestamp())
        per_command = (tracemalloc.get_traced_memory()[0] - before) / len(values)
    finally:
        tracemalloc.stop()
    assert len(memory) == 10_000
    assert memory.locate("cmd-0004321") == (4321 % 6, 4321)
    print(f"{per_command:.1f} bytes a command")
    assert per_command < 100, per_command


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
