"""Dead letters (contract section 5) can always be written, whatever the original's size."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.commands.results import MAX_REASON, dead_letter_record, shorten
from bridge.kafka.size import MAX_RECORD_SIZE, size_of

LIMIT = 10_000
ORIGINAL_HEADERS = (("traceparent", b"00-abc-def-01"), ("dlq-reason", b"old"))


def dead(
    key: bytes | None = b"key",
    value: bytes | None = b"{}",
    headers: tuple[tuple[str, bytes], ...] = ORIGINAL_HEADERS,
    **extra: Any,
) -> Any:
    fields: dict[str, Any] = {
        "key": key,
        "value": value,
        "headers": headers,
        "reason": "action: must be one of create, delete, get, list",
        "topic": "bird.connector-commands",
        "partition": 2,
        "offset": 41,
        "command_id": "c-1",
        "limit": LIMIT,
    }
    fields.update(extra)
    return dead_letter_record(**fields)


OMISSIONS = ("dlq-value-omitted", "dlq-headers-omitted", "dlq-key-omitted")


@pytest.mark.parametrize(
    ("key", "value", "headers", "omitted"),
    [
        (b"key", b"{}", ORIGINAL_HEADERS, ()),
        (b"key", b"x" * (LIMIT - 400), ORIGINAL_HEADERS, ()),  # fits with the dlq-* headers
        (b"key", b"x" * (LIMIT - 200), ORIGINAL_HEADERS, ("dlq-value-omitted",)),
        (b"key", b"x" * 50 * LIMIT, ORIGINAL_HEADERS, ("dlq-value-omitted",)),
        (
            b"key",
            b"x" * LIMIT,
            (("big", b"h" * LIMIT),),
            ("dlq-value-omitted", "dlq-headers-omitted"),
        ),
        (b"k" * LIMIT, b"", (), ("dlq-value-omitted", "dlq-key-omitted")),
        (b"k" * LIMIT, None, (("big", b"h" * LIMIT),), OMISSIONS),
    ],
    ids=["small", "just-fits", "tipped-over", "huge", "huge-headers", "huge-key", "all-huge"],
)
def test_what_does_not_fit_is_left_out_and_said(
    key: bytes, value: bytes | None, headers: tuple[tuple[str, bytes], ...], omitted: tuple[str]
) -> None:
    record = dead(key, value, headers)
    names = {name for name, _ in record.headers}
    assert size_of(record) <= LIMIT
    assert {name for name in OMISSIONS if name in names} == set(omitted)
    assert record.header("dlq-reason") == b"action: must be one of create, delete, get, list"
    assert record.header("dlq-source-offset") == b"41"
    assert record.header("correlation-id") == b"c-1"
    assert record.key == (None if "dlq-key-omitted" in omitted else key)
    if "dlq-value-omitted" in omitted:
        assert record.value == b""
        assert record.header("dlq-original-size") == str(len(value or b"")).encode()
        why = (record.header("dlq-value-omitted") or b"").decode()
        assert f"over Kafka's record limit of {LIMIT}" in why
        assert int(why.split("would be ")[1].split(" bytes")[0]) > LIMIT
    else:
        assert record.value == (value or b"")
        assert record.header("dlq-original-size") is None
    if "dlq-headers-omitted" in omitted:
        assert record.header("dlq-headers-omitted") == str(len(headers)).encode()
    if "dlq-key-omitted" in omitted:
        assert record.header("dlq-key-omitted") == str(len(key)).encode()
    if not {"dlq-headers-omitted"} & set(omitted):
        # Original headers are kept, but never an earlier dead letter's dlq-* headers.
        kept = [(k, v) for k, v in record.headers if k == "traceparent" or v == b"old"]
        assert kept == [h for h in headers if not h[0].startswith("dlq-")]


def test_a_copy_kafka_refused_leaves_out_everything_it_can() -> None:
    record = dead(refused_size=5000)
    assert (record.key, record.value) == (None, b"")
    assert (
        record.header("dlq-value-omitted") == b"Kafka refused the copy of 5000 bytes as too large"
    )
    assert record.header("dlq-original-size") == b"2"
    assert record.header("dlq-headers-omitted") == b"1"
    assert record.header("dlq-key-omitted") == b"3"


def test_the_largest_record_a_default_producer_sends_still_gets_a_dead_letter() -> None:
    value = b"x" * (MAX_RECORD_SIZE - 100)
    record = dead(value=value, limit=MAX_RECORD_SIZE)
    assert size_of(record) <= MAX_RECORD_SIZE
    assert record.header("dlq-original-size") == str(len(value)).encode()


def test_a_long_reason_is_cut_and_says_so() -> None:
    record = dead(reason="r" * 10 * MAX_REASON)
    reason = (record.header("dlq-reason") or b"").decode()
    assert len(reason) == MAX_REASON
    kept = reason.index(".")
    assert reason == "r" * kept + f"... ({10 * MAX_REASON - kept} characters cut)"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("x" * 10, 10, "x" * 10),
        ("x" * 40, 30, "x" * 7 + "... (33 characters cut)"),
        ("x" * 1000, 30, "x" * 6 + "... (994 characters cut)"),
    ],
)
def test_shorten(text: str, limit: int, expected: str) -> None:
    assert shorten(text, limit) == expected
    assert len(shorten(text, limit)) <= limit
