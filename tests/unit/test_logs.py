"""Secrets never reach a log line, whatever the level or the shape of the value."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog

from bridge import logs
from bridge.logs import REDACTED, Redactor


def test_redactor_scrubs_strings_and_containers() -> None:
    redactor = Redactor(["s3cret-key", "s3cret"])
    event = {
        "event": "calling with AccessKey s3cret-key",
        "headers": {"Authorization": "AccessKey s3cret-key"},
        "count": 3,
    }
    out = redactor(None, "info", dict(event))
    assert out["event"] == f"calling with AccessKey {REDACTED}"
    assert "s3cret" not in out["headers"]
    assert out["count"] == 3


def test_configured_pipeline_redacts_structlog_and_stdlib_lines() -> None:
    stream = io.StringIO()
    logs.configure(fmt="console", level="debug", secrets=["hunter2-access"], stream=stream)
    try:
        structlog.get_logger("t").debug("key is hunter2-access", extra="x hunter2-access")
        logging.getLogger("aiokafka").warning("sasl password hunter2-access rejected")
    finally:
        logs.configure(fmt="console", level="info", stream=io.StringIO())
    text = stream.getvalue()
    assert "hunter2" not in text
    assert text.count(REDACTED) >= 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AccessKey kq7-Zp4x", f"AccessKey {REDACTED}"),
        ('{"key": "kq7-Zp4x"}', f'{{"key": "{REDACTED}"}}'),
        ("url?key=kq7-Zp4x&x=1", f"url?key={REDACTED}&x=1"),
        ("kq7-Zp4x:kq7-Zp4x/kq7-Zp4x", f"{REDACTED}:{REDACTED}/{REDACTED}"),
        # Glued to other text, the secret still goes (the text around it stays).
        ("xkq7-Zp4x", f"x{REDACTED}"),
        ("kq7-Zp4x_2", f"{REDACTED}_2"),
        # Parts of the secret are never replaced: only its whole value.
        ("kq7 and Zp4x", "kq7 and Zp4x"),
        ("no secret here", "no secret here"),
    ],
)
def test_redaction_replaces_whole_values_only(text: str, expected: str) -> None:
    assert Redactor(["kq7-Zp4x"]).scrub(text) == expected


def test_the_longest_secret_wins_where_one_contains_another() -> None:
    redactor = Redactor(["abcdefgh", "abcdefgh-ijklmnop"])
    assert redactor.scrub("k=abcdefgh-ijklmnop k2=abcdefgh") == f"k={REDACTED} k2={REDACTED}"


def test_list_and_dict_fields_keep_their_shape_when_secrets_are_configured() -> None:
    """With any secret set, a list field was logged as its Python repr ("['ingest', ...]")."""
    stream = io.StringIO()
    logs.configure(fmt="json", level="info", secrets=["hunter2-access"], stream=stream)
    try:
        structlog.get_logger("t").info(
            "started",
            roles=["ingest", "commands"],
            topics={"events": "bird.events", "keys": ("hunter2-access", 2)},
            nested=[[[[[[[[[["deep hunter2-access"]]]]]]]]]],
        )
    finally:
        logs.configure(fmt="console", level="info", stream=io.StringIO())
    line = orjson.loads(stream.getvalue())
    assert line["roles"] == ["ingest", "commands"]
    assert line["topics"] == {"events": "bird.events", "keys": [REDACTED, 2]}
    assert "hunter2" not in stream.getvalue()
    assert REDACTED in str(line["nested"])  # past the depth limit: scrubbed text


def test_a_cyclic_value_is_scrubbed_text_not_a_recursion_error() -> None:
    cyclic: list[object] = ["AccessKey kq7-Zp4x"]
    cyclic.append(cyclic)
    out = Redactor(["kq7-Zp4x"])(None, "info", {"event": "x", "value": cyclic})
    assert "kq7-Zp4x" not in str(out["value"])


def test_many_secrets_are_found_by_prefix_with_the_same_results() -> None:
    """Hundreds of workspaces bring a thousand keys: each is still replaced wherever it
    appears, the longest first, and a part of one is left alone."""
    keys = [f"workspace-{n:04d}-signing-key" for n in range(1000)]
    longer = keys[7] + "-and-more"
    redactor = Redactor([*keys, longer])
    text = f"x{keys[999]}y {longer} {keys[0][:-1]} {keys[3]}"
    expected = f"x{REDACTED}y {REDACTED} {keys[0][:-1]} {REDACTED}"
    assert redactor.scrub(text) == expected
    assert redactor.scrub_value({"k": [keys[42]]}) == {"k": [REDACTED]}
    assert redactor.scrub("short") == "short"


class _Writes(io.StringIO):
    """A stream that remembers each write() call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_each_line_is_one_write_with_its_newline() -> None:
    """Several processes share the stream (BRIDGE_HTTP_WORKERS): a line written in two
    calls can be split by another process's line between them."""
    stream = _Writes()
    logs.configure(stream=stream)
    structlog.get_logger("bridge.test").info("webhook", status=204)
    logging.getLogger("aiokafka").warning("from the standard library")
    assert len(stream.calls) == 2, stream.calls
    for call in stream.calls:
        assert call.endswith("\n"), call
        assert call.count("\n") == 1, call
        orjson.loads(call)
