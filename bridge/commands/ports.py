"""What the command core needs of the outside world, as ``typing.Protocol``s. Pure.

The executor talks to Bird, the ledger and the results topic only through these; the
production adapters are ``BirdClient`` (bridge/bird/client.py), ``Ledger``
(commands/ledger.py), ``KafkaResultSink`` (commands/runtime.py) and ``Publisher``
(bridge/kafka/publisher.py). tests/fakes.py has small recording fakes of each.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, Protocol

from bridge.commands.ledger_state import Entry
from bridge.events import Record, Tombstone
from bridge.tracecontext import TraceContext


class Delivered(Protocol):
    """Where Kafka put a record (aiokafka's ``RecordMetadata`` has these and more)."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class DurablePublisher(Protocol):
    """Publishes a record and returns once Kafka acknowledged it, waiting through outages;
    raises ``RecordTooLarge`` for a record over the limit."""

    @property
    def max_record_size(self) -> int: ...

    async def publish_durably(
        self, topic: str, record: Record | Tombstone, *, partition: int | None = None
    ) -> Delivered: ...


class BirdConnectors(Protocol):
    """Bird's Connectors and Channels API. Failures are ``BirdError``s; ``deadline`` is a
    ``time.monotonic()`` value by which the call (with its retries) gives up; ``trace``
    the context every request of the call carries (``traceparent``, ``tracestate``)."""

    async def create_connector(
        self,
        workspace: str,
        body: Mapping[str, Any],
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> dict[str, Any]: ...

    async def get_connector(
        self,
        workspace: str,
        connector_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> dict[str, Any]: ...

    async def delete_connector(
        self,
        workspace: str,
        connector_id: str,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> bool: ...

    async def list_connectors(
        self,
        workspace: str,
        template_ref: str | None,
        *,
        deadline: float,
        trace: TraceContext | None = None,
    ) -> list[dict[str, Any]]: ...

    async def get_channel(
        self, workspace: str, channel_id: str, *, deadline: float, trace: TraceContext | None = None
    ) -> dict[str, Any]: ...


class LedgerStore(Protocol):
    """What was done per commandId: found through an index in memory, read back from the
    store on a hit, written durably."""

    async def get(self, command_id: str) -> Entry | None: ...

    def claimed_connectors(self) -> Container[str]: ...

    async def write(self, entry: Entry) -> None: ...

    async def final_value(self, entry: Entry) -> bytes | None: ...


class ResultSink(Protocol):
    """The results topic: an encoded result event (``results.result_value``), published
    as is, keyed by its commandId, with ``trace`` in its headers."""

    @property
    def max_record_size(self) -> int: ...

    async def publish(
        self, command_id: str, value: bytes, *, trace: TraceContext | None = None
    ) -> None: ...
