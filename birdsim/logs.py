"""structlog set-up of ``bridge simulator``: JSON lines or console; its keys redacted.

The simulator's own, so it needs nothing from the bridge. ``configure`` is the only function
with side effects; ``Redactor`` is pure.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"


class Redactor:
    """Replace every access key and admin token in an event's text, inside lists and
    dicts too; other values are left as they are."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, int | float | bool | type(None)):
            return value
        return self.scrub(str(value))

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self.secrets:
            for key, value in event.items():
                event[key] = self.scrub(value)
        return event


def configure(*, fmt: str = "console", level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Configure structlog and the stdlib root logger (aiohttp logs through it) on stderr."""
    numeric = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(secrets),
    ]
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(separators=(",", ":"), default=str)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Not below info: asyncio's and aiohttp's debug lines are not the simulator's.
    root.setLevel(max(numeric, logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
