"""Secrets never reach a log line, whatever the level or the shape of the value."""

from __future__ import annotations

import io
import logging

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
