"""What the ledger knows per ``commandId``, and how a record changes it. Pure.

Entry states only move forward: started -> accepted -> final. Memory keeps no entry, only
a compact index (``ledger_index.py``) of every command in the ledger: the 64-bit hash of
its commandId -> the place (partition, offset) and state of its latest record. A command
seen again is a hit there, and its entry is read back from the topic (``ledger.py``). A
final entry is forgotten once it is older than the idempotency window. The connectors
claimed by commands are a second index (hashes of connector ids). Both cover the whole
ledger, every partition, in every replica: a command may come back under any key, so on
any partition of the commands topic, to any replica (docs/guarantees.md, "Where the
memory lives"). The Kafka side (tailing, barriers, read-back) is ``ledger.py``; this module
takes the time as an argument and does no I/O.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, NamedTuple

import msgspec
import structlog

from bridge.commands.ledger_image import LedgerImage
from bridge.commands.ledger_index import ExpiryQueue, HashIndex, key_of
from bridge.events import Record
from bridge.messages import NULL, LedgerRecord, raw_or_none

log = structlog.get_logger("bridge.ledger")

State = Literal["started", "accepted", "final"]
_RANK: dict[str, int] = {"started": 0, "accepted": 1, "final": 2}
_FINAL = _RANK["final"]
# Keys of the bridge's own records in the ledger topic start with a zero byte (a commandId
# cannot: contract section 3): barriers (``Ledger.sync``) and snapshot markers.
INTERNAL_PREFIX = b"\x00"
BARRIER_KEY = INTERNAL_PREFIX + b"barrier"
SNAPSHOT_MARKER_PREFIX = INTERNAL_PREFIX + b"snapshot/"


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


def ledger_record(entry: Entry) -> Record:
    """The Kafka record of ``entry`` in the ledger topic (keyed by its commandId)."""
    return Record(key=entry.command_id.encode(), value=entry.to_json())


def epoch(rfc3339_time: str, default: float) -> float:
    """Seconds since the epoch; ``default`` for an unreadable time."""
    try:
        return datetime.fromisoformat(rfc3339_time).timestamp()
    except ValueError:
        return default


class _Peek(msgspec.Struct, rename="camel"):
    """What the index needs of a ledger record (the rest, results included, is skipped)."""

    command_id: str
    state: State
    connector_id: str | None = None


_peek = msgspec.json.Decoder(_Peek)


# A place in the index: the state's rank, the partition and the offset, in one integer.
_OFFSET_BITS = 46
_PARTITION_BITS = 15
_RANK_SHIFT = _PARTITION_BITS + _OFFSET_BITS
_MAX_PARTITION = 1 << _PARTITION_BITS
_MAX_OFFSET = 1 << _OFFSET_BITS


def pack(rank: int, position: tuple[int, int]) -> int:
    partition, offset = position
    if not (0 <= partition < _MAX_PARTITION and 0 <= offset < _MAX_OFFSET):
        raise ValueError(f"ledger position out of range: {position}")
    return (rank << _RANK_SHIFT) | (partition << _OFFSET_BITS) | offset


def unpack(packed: int) -> tuple[int, tuple[int, int]]:
    """(rank, (partition, offset))."""
    offset = packed & (_MAX_OFFSET - 1)
    partition = (packed >> _OFFSET_BITS) & (_MAX_PARTITION - 1)
    return packed >> _RANK_SHIFT, (partition, offset)


@dataclass
class LedgerState:
    """The index of every command in the ledger (a final one only within ``window_s``):
    where its latest record is. ``len()`` is the number of commands indexed."""

    window_s: float
    _places: HashIndex = field(default_factory=HashIndex)
    _claims: HashIndex = field(default_factory=lambda: HashIndex(keys_only=True))
    _expiries: ExpiryQueue = field(default_factory=ExpiryQueue)

    def __len__(self) -> int:
        return len(self._places)

    def locate(self, command_id: str) -> tuple[int, int] | None:
        """Where the latest ledger record of ``command_id`` is: (partition, offset)."""
        packed = self._places.get(key_of(command_id.encode()))
        return None if packed is None else unpack(packed)[1]

    def is_claimed(self, connector_id: str) -> bool:
        """Whether a command in the ledger has this connector (accepted or final)."""
        return key_of(connector_id.encode()) in self._claims

    def expired(self, entry: Entry, now: float) -> bool:
        """A final entry older than the window: forgotten, as if never seen."""
        return entry.state == "final" and epoch(entry.started_at, now) + self.window_s <= now

    def reserve(self, commands: int) -> None:
        """Room for ``commands`` without growing (the start knows roughly how many)."""
        self._places.reserve(commands)
        self._claims.reserve(commands)

    def apply(self, entry: Entry, position: tuple[int, int], now: float) -> None:
        """``entry`` was written at ``position`` (partition, offset); ``now`` is epoch seconds.
        A final entry is forgotten ``window_s`` after its start (an unreadable start time
        keeps it for a whole window from ``now``)."""
        expiry = epoch(entry.started_at, now) + self.window_s if entry.state == "final" else 0.0
        key = key_of(entry.command_id.encode())
        self._apply(key, _RANK[entry.state], entry.connector_id, position, expiry, now)
        self.expire(now)

    def _apply(
        self,
        key: int,
        rank: int,
        connector_id: str | None,
        position: tuple[int, int],
        expiry: float,
        now: float,
    ) -> None:
        """A late copy of an older state changes nothing; a final entry past ``expiry`` is
        forgotten. ``apply_records`` is the same, inlined."""
        if rank == _FINAL and expiry <= now:
            self._places.remove(key)
            return
        packed = pack(rank, position)
        if not self._places.put_unless_higher(key, packed, _RANK_SHIFT):
            return
        claim = key_of(connector_id.encode()) if connector_id else 0
        if claim:
            self._claims.put(claim, 0)
        if rank == _FINAL:
            self._expiries.append(int(expiry) + 1, key, packed, claim)

    def export(self) -> LedgerImage:
        """Copies of the index's tables (memory copies, no loop over them)."""
        return LedgerImage(*(table for step in self.export_in_steps() for table in step))

    def export_in_steps(self) -> Iterator[tuple[array[int], ...]]:
        """The tables of ``LedgerImage``, in its order, each copied when the iterator gets
        to it, so a snapshot holds one copy at a time, not all four: the expiry rows, then
        the places (keys and values at once), then the claims. The index may change between
        the steps; a snapshot loads right all the same, because the loader reads the ledger
        again from where it was when the first step was copied, and applying a record again
        changes nothing: a place or claim added later is added again; a place removed
        later had expired, and its row, still in the copy, finds no place then."""
        yield (self._expiries.export(),)
        yield self._places.export()
        yield (self._claims.export()[0],)

    def load(self, image: LedgerImage) -> None:
        """Become the index ``export`` returned (its tables taken over). Raises
        ``ValueError`` for tables that cannot be an index (and changes nothing then)."""
        places = HashIndex.restore(image.place_keys, image.place_values)
        claims = HashIndex.restore(image.claim_keys, array("q", [0]), keys_only=True)
        expiries = ExpiryQueue.restore(image.expiry_rows)
        self._places, self._claims, self._expiries = places, claims, expiries

    def expire(self, now: float) -> None:
        """Forget the final entries whose time is up (after each batch of records read)."""
        expiries = self._expiries
        if not expiries.due(now):
            return
        # A final entry is never replaced by another state: an expired row whose place is
        # still indexed is that final entry (a newer final of the same command, written
        # after its window, has its own place and row).
        for key, packed, claim in expiries.pop_expired(now):
            if self._places.get(key) == packed:
                self._places.remove(key)
                if claim:
                    self._claims.remove(claim)

    def apply_record(
        self,
        key: bytes | None,
        value: bytes | None,
        position: tuple[int, int],
        now: float,
        written_at: float | None = None,
    ) -> None:
        """One record read from the ledger topic (``apply_records``), written at
        ``written_at`` (epoch seconds; unknown: ``now``)."""
        timestamp = -1 if written_at is None else int(written_at * 1000)
        self.apply_records(position[0], [ReadRecord(key, value, position[1], timestamp)], now)

    def apply_records(self, partition: int, records: Iterable[ReadRecord], now: float) -> None:
        """Records read from ``partition`` of the ledger topic, in order: barriers are
        skipped, a tombstone forgets its command, an unreadable record (or one whose key is
        not its commandId) is logged and skipped. Only what the index needs is decoded: not
        the start time. A final entry is forgotten ``window_s`` after it was written (its
        Kafka timestamp; unknown: ``now``), which is after its start (its writer stamped
        both with one clock), so never early; ``expired`` decides exactly once the entry is
        read back. Call ``expire`` after a batch.

        The start runs this once per record of the whole topic: it is ``_apply`` inlined,
        with one call per record into each table."""
        if not 0 <= partition < _MAX_PARTITION:
            raise ValueError(f"ledger partition out of range: {partition}")
        decode, ranks, window = _peek.decode, _RANK, self.window_s
        places, claims, expiries = self._places, self._claims, self._expiries
        base = partition << _OFFSET_BITS
        for record in records:
            key, value = record.key, record.value
            if key is None or key[:1] == INTERNAL_PREFIX:  # barriers, snapshot markers
                continue
            if value is None:  # tombstone
                places.remove(key_of(key))
                continue
            try:
                peek = decode(value)
            except (msgspec.DecodeError, RecursionError):
                log.warning("unreadable ledger record skipped", key=key.decode(errors="replace"))
                continue
            if peek.command_id.encode() != key:
                log.warning(
                    "ledger record skipped: its key is not its commandId",
                    key=key.decode(errors="replace"),
                )
                continue
            index_key = key_of(key)
            rank = ranks[peek.state]
            if rank == _FINAL:
                written = record.timestamp / 1000 if record.timestamp > 0 else now
                expiry = written + window
                if expiry <= now:
                    places.remove(index_key)
                    continue
            offset = record.offset
            if not 0 <= offset < _MAX_OFFSET:
                raise ValueError(f"ledger offset out of range: {offset}")
            packed = (rank << _RANK_SHIFT) | base | offset
            if not places.put_unless_higher(index_key, packed, _RANK_SHIFT):
                continue
            connector_id = peek.connector_id
            claim = key_of(connector_id.encode()) if connector_id else 0
            if claim:
                claims.put(claim, 0)
            if rank == _FINAL:
                expiries.append(int(expiry) + 1, index_key, packed, claim)


class ReadRecord(NamedTuple):
    """What ``apply_records`` reads of a Kafka record (aiokafka's ``ConsumerRecord`` has
    these and more)."""

    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int  # epoch milliseconds; -1: unknown


@dataclass(frozen=True)
class ClaimedConnectors:
    """``connector_id in claimed``: a command in the ledger (any partition) has it."""

    state: LedgerState

    def __contains__(self, connector_id: object) -> bool:
        return isinstance(connector_id, str) and self.state.is_claimed(connector_id)
