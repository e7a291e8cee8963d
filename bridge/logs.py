"""structlog set-up: JSON lines (orjson) by default, console on request; secrets redacted.

``configure`` is the only function with side effects; the processors are pure.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson
import structlog

REDACTED = "[redacted]"
# Nesting the redactor follows into lists and dicts; deeper (or cyclic) values become text.
_MAX_DEPTH = 8
# Up to this many secrets, each is looked for in every string; beyond, by prefix.
_SCAN_UP_TO = 16


class Redactor:
    """Replace every known secret value wherever it appears in an event's strings.

    Only a secret's whole value is replaced, never a part of it, and config refuses
    secrets under 8 characters: a one-letter secret would otherwise replace that letter
    everywhere and so show itself. A secret glued to other text is still replaced (the
    text around it stays), so no spelling of a log line can carry a key out.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Many secrets (hundreds of workspaces, each with its keys): trying each one on
        # every string would cost every log line hundreds of microseconds; look up each
        # position's first characters instead, so the cost follows the text's length.
        self._width = min((len(s) for s in self.secrets), default=0)
        self._by_prefix: dict[str, list[str]] | None = None
        if len(self.secrets) > _SCAN_UP_TO:
            self._by_prefix = {}
            for secret in self.secrets:
                self._by_prefix.setdefault(secret[: self._width], []).append(secret)

    def scrub(self, text: str) -> str:
        if self._by_prefix is None:
            candidates: Iterable[str] = self.secrets
        else:
            width, index = self._width, self._by_prefix
            found = {
                secret
                for i in range(len(text) - width + 1)
                for secret in index.get(text[i : i + width], ())
            }
            if not found:
                return text
            candidates = sorted(found, key=len, reverse=True)
        for secret in candidates:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def scrub_value(self, value: Any, depth: int = 0) -> Any:
        """``value`` with every secret in its strings replaced; lists, tuples and dicts
        keep their shape (a list field stays a JSON array). Other objects, and containers
        nested deeper than ``_MAX_DEPTH``, are rendered as text anyway: that text is
        scrubbed."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, int | float | bool | type(None)):
            return value
        if depth < _MAX_DEPTH:
            if isinstance(value, list | tuple):
                return type(value)(self.scrub_value(item, depth + 1) for item in value)
            if isinstance(value, dict):
                return {
                    self.scrub_value(k, depth + 1): self.scrub_value(v, depth + 1)
                    for k, v in value.items()
                }
        return self.scrub(repr(value))

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event
        for key, value in event.items():
            event[key] = self.scrub_value(value)
        return event


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or repr).decode()


def configure(
    *, fmt: str = "json", level: str = "info", secrets: Iterable[str] = (), stream: Any = None
) -> None:
    """Configure structlog and the stdlib root logger (aiokafka and aiohttp log through it)."""
    numeric = logging.getLevelName(level.upper())
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    # One write() per line, newline included (print() writes the newline apart): processes
    # that share the stream (BRIDGE_HTTP_WORKERS) can then never split each other's lines.
    factory = structlog.WriteLoggerFactory(stream or sys.stderr)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # Route the standard library's logging (aiokafka, aiohttp) through the same pipeline.
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer if fmt == "console" else _StdlibJSON(),
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    # aiohttp's access log is replaced by our own one line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class _StdlibJSON:
    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
        event.pop("_record", None)
        event.pop("_from_structlog", None)
        return orjson.dumps(event, default=repr).decode()
