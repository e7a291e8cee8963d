"""How many bytes the Kafka producer counts for one record, and the limit it enforces. Pure.

aiokafka refuses a record whose size estimate (``DefaultRecordBatchBuilder.
estimate_size_in_bytes``: the batch header, the most a record's framing can add, then
key, value and headers with their varint lengths) exceeds ``max_request_size``. This
module computes the same number, so a record can be checked before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.events import Record, Tombstone

# Kafka's default message.max.bytes; the producer enforces it client side, also against
# brokers that have no limit of their own (the embedded one).
MAX_RECORD_SIZE = 1024 * 1024
# A v2 record batch header (61 bytes) plus the most a record's own framing adds (21).
_BATCH_OVERHEAD = 61 + 21


def varint_size(value: int) -> int:
    """Bytes of a zig-zag varint (Kafka's record format v2)."""
    encoded = (value << 1) ^ (value >> 63)
    size = 1
    while encoded > 0x7F:
        encoded >>= 7
        size += 1
    return size


def _field_size(data: bytes | None) -> int:
    return 1 if data is None else varint_size(len(data)) + len(data)


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] = ()
) -> int:
    """The size aiokafka compares with ``max_request_size`` (uncompressed, upper bound)."""
    headers = list(headers)
    size = _BATCH_OVERHEAD + _field_size(key) + _field_size(value) + varint_size(len(headers))
    for name, data in headers:
        size += _field_size(name.encode()) + _field_size(data)
    return size


def size_of(record: Record | Tombstone) -> int:
    return record_size(record.key, record.value, record.headers)
