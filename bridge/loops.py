"""``BRIDGE_EVENT_LOOP``: the loop ``bridge run`` runs on (uvloop by default, or asyncio's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bridge.errors import StartupError

T = TypeVar("T")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the named loop (None: asyncio's default); ``StartupError`` when
    uvloop is asked for and not installed."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise StartupError(
            "BRIDGE_EVENT_LOOP=uvloop (the default): uvloop is not installed; "
            "pip install uvloop, or set BRIDGE_EVENT_LOOP=asyncio"
        ) from None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """``asyncio.run(main)`` on the named event loop."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        return runner.run(main)
