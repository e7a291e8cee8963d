"""Dead-letter selection, redrive headers and the loop guard (contract section 11). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

REDRIVE_COUNT = "dlq-redrive-count"
REDRIVEN_FROM = "dlq-redriven-from"
# dlq-* headers a redriven record carries, which its next dead letter keeps.
KEPT_ON_DEAD_LETTER = frozenset({REDRIVE_COUNT, REDRIVEN_FROM})
DEFAULT_MAX_REDRIVES = 3

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter record, as read from the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        found = next((v for k, v in self.headers if k == name), None)
        return None if found is None else found.decode(errors="replace")

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def reason(self) -> str:
        return self.header("dlq-reason") or ""

    @property
    def source_topic(self) -> str | None:
        return self.header("dlq-source-topic") or None

    @property
    def redrive_count(self) -> int:
        return parse_count(self.header(REDRIVE_COUNT))


def parse_count(raw: str | None) -> int:
    """A ``dlq-redrive-count`` value; an unreadable one counts as the maximum possible
    (never resend what cannot be counted)."""
    if raw is None:
        return 0
    try:
        count = int(raw.strip())
    except ValueError:
        return 1 << 30
    return count if count >= 0 else 1 << 30


@dataclass(frozen=True, slots=True)
class Filters:
    reason: str | None = None  # a case-insensitive substring of dlq-reason
    source_topic: str | None = None  # exactly dlq-source-topic

    def match(self, letter: DeadLetter) -> bool:
        if self.reason is not None and self.reason.lower() not in letter.reason.lower():
            return False
        return self.source_topic is None or letter.source_topic == self.source_topic


Verdict = Literal["redrive", "skip"]


def verdict(letter: DeadLetter, *, max_redrives: int) -> tuple[Verdict, str]:
    """Whether ``letter`` may be resent, and if not, why."""
    if letter.source_topic is None:
        return "skip", "no dlq-source-topic header"
    if letter.header("dlq-value-omitted") is not None:
        return "skip", "its value was left out of the dead letter (dlq-value-omitted)"
    if letter.header("dlq-headers-omitted") is not None:
        return "skip", "its headers were left out of the dead letter (dlq-headers-omitted)"
    if letter.redrive_count >= max_redrives:
        return "skip", f"already redriven {letter.redrive_count} times (--max-redrives)"
    return "redrive", ""


def redrive_headers(letter: DeadLetter) -> tuple[tuple[str, bytes], ...]:
    """The original headers (no dlq-*), plus the count (+1) and where it was redriven from."""
    original = tuple((k, v) for k, v in letter.headers if not k.startswith("dlq-"))
    return (
        *original,
        (REDRIVE_COUNT, str(letter.redrive_count + 1).encode()),
        (REDRIVEN_FROM, letter.where.encode()),
    )


def describe(letter: DeadLetter) -> dict[str, Any]:
    """The ``--json`` object of one dead letter (contract section 11, at least these)."""
    source_partition = letter.header("dlq-source-partition")
    source_offset = letter.header("dlq-source-offset")
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "timestamp": letter.timestamp,
        "key": None if letter.key is None else letter.key.decode(errors="replace"),
        "reason": letter.reason,
        "sourceTopic": letter.source_topic,
        "sourcePartition": _int_or_none(source_partition),
        "sourceOffset": _int_or_none(source_offset),
        "redriveCount": letter.redrive_count,
        "redrivenFrom": letter.header(REDRIVEN_FROM),
        "valueOmitted": letter.header("dlq-value-omitted") is not None,
    }


def _int_or_none(raw: str | None) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None
