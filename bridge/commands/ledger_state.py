"""What the ledger knows per ``commandId``, and how a record changes it. Pure.

Entry states only move forward: started -> accepted -> final. A final entry is kept as
its place in the ledger topic (not its result) and forgotten once it is older than the
idempotency window. The Kafka side (tailing, barriers, read-back) is ``ledger.py``;
this module takes the time as an argument and does no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import msgspec
import structlog

from bridge.events import Record
from bridge.messages import NULL, LedgerRecord, raw_or_none

log = structlog.get_logger("bridge.ledger")

State = Literal["started", "accepted", "final"]
_RANK: dict[str, int] = {"started": 0, "accepted": 1, "final": 2}
BARRIER_KEY = b"\x00barrier"


@dataclass(frozen=True, slots=True)
class Entry:
    command_id: str
    fingerprint: str
    action: str
    state: State
    started_at: str
    connector_id: str | None = None
    connector: dict[str, Any] | None = None
    accepted_result: bytes | None = None  # the result event, as published
    final_result: bytes | None = None
    position: tuple[int, int] | None = None  # in memory only: see compact()

    def to_json(self) -> bytes:
        if self.state == "final" and self.final_result is None:
            raise ValueError("a compacted ledger entry cannot be written again")
        record = LedgerRecord(
            command_id=self.command_id,
            fingerprint=self.fingerprint,
            action=self.action,
            state=self.state,
            started_at=self.started_at,
            connector_id=self.connector_id,
            connector=self.connector,
            accepted_result=_raw(self.accepted_result),
            final_result=_raw(self.final_result),
        )
        return msgspec.json.encode(record)

    @classmethod
    def from_json(cls, value: bytes) -> Entry:
        """Raises ``LedgerDecodeError`` for a record that is not a ledger entry."""
        try:
            record = msgspec.json.decode(value, type=LedgerRecord)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise LedgerDecodeError(str(exc)) from None
        return cls(
            command_id=record.command_id,
            fingerprint=record.fingerprint,
            action=record.action,
            state=record.state,
            started_at=record.started_at,
            connector_id=record.connector_id,
            connector=record.connector,
            accepted_result=raw_or_none(record.accepted_result),
            final_result=raw_or_none(record.final_result),
        )

    def accepted(self, connector: dict[str, Any], result: bytes | None) -> Entry:
        return replace(
            self,
            state="accepted",
            connector_id=str(connector.get("id")),
            connector=connector,
            accepted_result=result,
        )

    def final(self, result: bytes) -> Entry:
        """The final entry holds the result only (no connector, no accepted result): a
        final entry is read back for its result alone, and its record stays about the
        size of the result (both must fit in a Kafka record)."""
        return replace(
            self, state="final", final_result=result, connector=None, accepted_result=None
        )

    def compact(self, position: tuple[int, int]) -> Entry:
        """What memory keeps of a final entry: who it is and where its record is in the
        ledger topic (partition, offset), not the result. A command seen again after it
        finished is rare; its result is read back from the topic then."""
        return Entry(
            command_id=self.command_id,
            fingerprint=self.fingerprint,
            action=self.action,
            state="final",
            started_at=self.started_at,
            connector_id=self.connector_id,
            position=position,
        )


class LedgerDecodeError(ValueError):
    """A ledger record that cannot be read as an entry."""


def _raw(result: bytes | None) -> msgspec.Raw:
    return NULL if result is None else msgspec.Raw(result)


def newer(current: Entry | None, candidate: Entry) -> bool:
    return current is None or _RANK[candidate.state] >= _RANK[current.state]


def ledger_record(entry: Entry) -> Record:
    """The Kafka record of ``entry`` in the ledger topic (keyed by its commandId)."""
    return Record(key=entry.command_id.encode(), value=entry.to_json())


def epoch(rfc3339_time: str, default: float) -> float:
    """Seconds since the epoch; ``default`` for an unreadable time."""
    try:
        return datetime.fromisoformat(rfc3339_time).timestamp()
    except ValueError:
        return default


@dataclass
class LedgerState:
    """``entries`` holds every command started within ``window_s``; a final one only as its
    place in the topic (``Entry.compact``), and older final entries are forgotten, bounding
    memory."""

    window_s: float
    entries: dict[str, Entry] = field(default_factory=dict)
    _expiries: deque[tuple[float, str]] = field(default_factory=deque)

    def get(self, command_id: str) -> Entry | None:
        return self.entries.get(command_id)

    def claimed_connectors(self) -> set[str]:
        return {e.connector_id for e in self.entries.values() if e.connector_id}

    def apply(self, entry: Entry, position: tuple[int, int], now: float) -> None:
        """``entry`` was written at ``position`` (partition, offset); ``now`` is epoch seconds.
        A late copy of an older state changes nothing; a final entry past the window is
        forgotten (an unreadable start time keeps it for a whole window from ``now``)."""
        if not newer(self.entries.get(entry.command_id), entry):
            return
        if entry.state != "final":
            self.entries[entry.command_id] = entry
            return
        expiry = epoch(entry.started_at, now) + self.window_s
        if expiry <= now:
            self.entries.pop(entry.command_id, None)
            return
        self.entries[entry.command_id] = entry.compact(position)
        self._expiries.append((expiry, entry.command_id))
        # Only final entries are queued, and a final entry is never replaced by another
        # state: whatever sits under an expired id is that final entry.
        while self._expiries and self._expiries[0][0] <= now:
            self.entries.pop(self._expiries.popleft()[1], None)

    def apply_record(
        self, key: bytes | None, value: bytes | None, position: tuple[int, int], now: float
    ) -> None:
        """One record read from the ledger topic: barriers are skipped, a tombstone forgets
        its command, an unreadable record is logged and skipped."""
        if key is None or key == BARRIER_KEY:
            return
        if value is None:  # tombstone
            self.entries.pop(key.decode(errors="replace"), None)
            return
        try:
            entry = Entry.from_json(value)
        except LedgerDecodeError:
            log.warning("unreadable ledger record skipped", key=key.decode(errors="replace"))
            return
        self.apply(entry, position, now)
