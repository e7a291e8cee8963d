"""Reading records as a consumer using the official CloudEvents SDK would (contract 9).

The SDK (PyPI ``cloudevents`` 2.x, ``cloudevents.core.bindings.kafka``, structured mode)
checks the required attributes, ``subject``, ``time`` (RFC 3339 with a zone) and the
extension names. It does not check that ``source`` is a URI-reference, so
``assert_uri_reference`` does (RFC 3986, section 4.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event

from bridge.events import CLOUDEVENTS_CONTENT_TYPE


class KafkaRecord(Protocol):
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Iterable[tuple[str, bytes]]: ...


# RFC 3986 section 4.1: URI-reference = URI / relative-ref. Our sources have no authority.
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|{_PCT})"
_URI_REFERENCE = re.compile(
    rf"(?P<scheme>[A-Za-z][A-Za-z0-9+\-.]*:)?(?P<path>(?:{_PCHAR}|/)*)"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)


def assert_uri_reference(value: str) -> None:
    match = _URI_REFERENCE.fullmatch(value)
    assert match is not None, f"not a URI-reference: {value!r}"
    if match["scheme"] is None:  # a relative-ref's first segment holds no ':'
        assert ":" not in match["path"].split("/", 1)[0], value


def read_with_sdk(record: KafkaRecord) -> BaseCloudEvent:
    """What a consumer using the SDK's structured Kafka reader gets from this record
    (a bridge ``Record`` or an aiokafka ``ConsumerRecord``)."""
    headers = dict(record.headers)
    assert headers["content-type"] == CLOUDEVENTS_CONTENT_TYPE.encode()
    assert record.value is not None
    event = from_structured_event(KafkaMessage(headers=headers, key=record.key, value=record.value))
    assert_uri_reference(event.get_source())
    return event
