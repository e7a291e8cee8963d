"""Small recording fakes of the command side's ports (bridge/commands/ports.py).

Each keeps what it was asked, in order, so a test can say what the command core did:
``FakeBird`` (Bird's Connectors and Channels API, with scripted failures),
``FakeLedger`` (the ledger store: its writes, and the records a read-back finds),
``RecordingSink`` (the results topic, as the bytes published) and ``RecordingPublisher``
(a durable publisher, for the real ``Ledger`` and ``KafkaResultSink``). They run in
memory and in milliseconds; the integration tests prove the same on the real broker
and the simulator.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.commands.ledger_state import ClaimedConnectors, Entry, LedgerState
from bridge.errors import BirdError, BirdOutcomeUnknown, BirdRejected, LedgerRecordMissing
from bridge.events import Record, Tombstone, rfc3339
from bridge.tracecontext import TraceContext


@dataclass
class FakeBird:
    """Bird's connectors in memory. A connector's channel starts ``pending`` and takes the
    statuses of ``channel_statuses`` one per ``get_channel`` (the last one stays).
    ``failures[operation]`` are raised, in order, before the operation acts;
    ``lose_create_answers`` creates that act and then raise ``BirdOutcomeUnknown`` (the
    connection was lost after Bird created the connector)."""

    channel_statuses: list[str] = field(default_factory=lambda: ["active"])
    failures: dict[str, list[BirdError]] = field(default_factory=lambda: defaultdict(list))
    lose_create_answers: int = 0
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    traces: list[TraceContext | None] = field(default_factory=list)  # one per call
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _polls: dict[str, int] = field(default_factory=dict)

    def _call(self, operation: str, subject: str, trace: TraceContext | None) -> None:
        self.calls.append((operation, subject))
        self.traces.append(trace)
        queued = self.failures.get(operation)
        if queued:
            raise queued.pop(0)

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def add_connector(self, body: Mapping[str, Any], *, created_at: datetime) -> dict[str, Any]:
        """A connector Bird already has (made by an earlier attempt, or by someone else)."""
        number = next(self._ids)
        connector_id, channel_id = f"k-{number}", f"ch-{number}"
        connector = {
            "id": connector_id,
            "name": body.get("name"),
            "connectorTemplateRef": body.get("connectorTemplateRef"),
            "arguments": body.get("arguments"),
            "createdAt": rfc3339(created_at),
            "channel": {"channelId": channel_id},
        }
        self.connectors[connector_id] = connector
        self.channels[channel_id] = {"id": channel_id, "status": "pending"}
        return dict(connector)

    async def create_connector(
        self,
        workspace: str,
        body: Mapping[str, Any],
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> dict[str, Any]:
        self._call("create_connector", str(body.get("name")), trace)
        connector = self.add_connector(body, created_at=self.now)
        if self.lose_create_answers:
            self.lose_create_answers -= 1
            raise BirdOutcomeUnknown("create_connector: connection to Bird failed")
        return connector

    async def get_connector(
        self,
        workspace: str,
        connector_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> dict[str, Any]:
        self._call("get_connector", connector_id, trace)
        if connector_id not in self.connectors:
            raise BirdRejected("get_connector: Bird answered 404", bird_status=404)
        return dict(self.connectors[connector_id])

    async def delete_connector(
        self,
        workspace: str,
        connector_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> bool:
        self._call("delete_connector", connector_id, trace)
        return self.connectors.pop(connector_id, None) is not None

    async def list_connectors(
        self,
        workspace: str,
        template_ref: str | None,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> list[dict[str, Any]]:
        self._call("list_connectors", template_ref or "", trace)
        return [
            dict(c)
            for c in self.connectors.values()
            if template_ref is None or c.get("connectorTemplateRef") == template_ref
        ]

    async def get_channel(
        self, workspace: str, channel_id: str, *, deadline: float, trace: TraceContext | None = None
    ) -> dict[str, Any]:
        self._call("get_channel", channel_id, trace)
        polls = self._polls.get(channel_id, 0)
        self._polls[channel_id] = polls + 1
        status = self.channel_statuses[min(polls, len(self.channel_statuses) - 1)]
        self.channels[channel_id]["status"] = status
        return dict(self.channels[channel_id])


@dataclass
class FakeLedger:
    """The ledger store in memory: ``writes`` in order, each at an offset of partition 0;
    ``records`` what a read-back finds there (drop one to make it ``missing``)."""

    window_s: float = 7 * 24 * 3600
    writes: list[Entry] = field(default_factory=list)
    records: dict[int, bytes] = field(default_factory=dict)
    state: LedgerState = field(init=False)

    def __post_init__(self) -> None:
        self.state = LedgerState(self.window_s)

    async def get(self, command_id: str) -> Entry | None:
        """As the Kafka ledger: found in the index, read back from ``records``."""
        position = self.state.locate(command_id)
        if position is None:
            return None
        value = self.records.get(position[1])
        if value is None:
            raise LedgerRecordMissing(f"nothing at {position}")
        entry = replace(Entry.from_json(value), position=position)
        return None if self.state.expired(entry, time.time()) else entry

    def claimed_connectors(self) -> Container[str]:
        return ClaimedConnectors(self.state)

    async def write(self, entry: Entry) -> None:
        value = entry.to_json()
        offset = len(self.writes)
        self.writes.append(entry)
        self.records[offset] = value
        self.state.apply(entry, (0, offset), time.time())

    async def final_value(self, entry: Entry) -> bytes | None:
        if entry.state != "final":
            return None
        if entry.final_result is None:
            assert entry.position is not None
            value = self.records.get(entry.position[1])
            if value is None:
                raise LedgerRecordMissing(f"nothing at {entry.position}")
            entry = Entry.from_json(value)
        return entry.final_result

    def states(self, command_id: str) -> list[str]:
        return [e.state for e in self.writes if e.command_id == command_id]


@dataclass
class RecordingSink:
    """The results topic: every result published, as the bytes Kafka would get."""

    max_record_size: int = 1024 * 1024
    published: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    traces: list[TraceContext | None] = field(default_factory=list)

    async def publish(
        self, command_id: str, value: bytes, *, trace: TraceContext | None = None
    ) -> None:
        self.keys.append(command_id)
        self.traces.append(trace)
        self.published.append(value)

    def results(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for value in self.published]

    def statuses(self) -> list[str]:
        return [result["data"]["status"] for result in self.results()]


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int


@dataclass
class RecordingPublisher:
    """A durable publisher that acknowledges at once: ``sent`` is (topic, record, partition)."""

    max_record_size: int = 1024 * 1024
    sent: list[tuple[str, Record | Tombstone, int | None]] = field(default_factory=list)

    async def publish_durably(
        self, topic: str, record: Record | Tombstone, *, partition: int | None = None
    ) -> Delivered:
        self.sent.append((topic, record, partition))
        return Delivered(partition or 0, len(self.sent) - 1)
