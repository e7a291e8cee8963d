"""The record size the producer checks against max_request_size, computed before sending."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import (
    DefaultRecordBatchBuilder,
    _DefaultRecordBatchBuilderPy,
)

from bridge.kafka.clients import producer_settings
from bridge.kafka.size import MAX_RECORD_SIZE, record_size, varint_size
from tests.kafka_helpers import bridge_config

Headers = list[tuple[str, bytes | None]]

CASES: list[tuple[bytes | None, bytes | None, Headers]] = [
    (None, None, []),
    (b"", b"", []),
    (b"k", b"v", [("content-type", b"application/cloudevents+json")]),
    (b"k" * 63, b"v" * 64, [("h", None), ("", b"")]),
    (b"k" * 64, b"v" * 8191, [("\u00e9t\u00e9", b"x" * 8192)]),  # key name counted in UTF-8
    (b"k" * 200, b"v" * 1_048_000, [("a" * 130, b"z" * 17_000)] * 3),
    (None, b"v" * (MAX_RECORD_SIZE + 5), [(f"h{i}", b"%d" % i) for i in range(200)]),
]


@pytest.mark.parametrize(("key", "value", "headers"), CASES)
def test_the_size_is_the_one_aiokafka_checks(
    key: bytes | None, value: bytes | None, headers: Headers
) -> None:
    expected = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    assert record_size(key, value, headers) == expected
    assert _DefaultRecordBatchBuilderPy.estimate_size_in_bytes(key, value, headers) == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (-1, 1), (-65, 2), (8191, 2), (8192, 3), (2**31, 5)],
)
def test_varint_sizes_are_zigzag(value: int, size: int) -> None:
    assert varint_size(value) == size


def test_the_producer_enforces_the_same_limit() -> None:
    settings = producer_settings(bridge_config("127.0.0.1:1").kafka)
    assert settings["max_request_size"] == MAX_RECORD_SIZE == 1024 * 1024
