"""BRIDGE_EVENT_LOOP: uvloop by default, asyncio's loop on request, a clear error otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest

from bridge.config import load
from bridge.errors import ConfigError, StartupError
from bridge.loops import loop_factory, run


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_default_is_uvloop() -> None:
    assert load({}).event_loop == "uvloop"
    assert run(loop_module(), "uvloop").startswith("uvloop")


def test_asyncio_runs_the_bridge_on_asyncios_own_loop() -> None:
    assert load({"BRIDGE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    assert loop_factory("asyncio") is None
    assert run(loop_module(), "asyncio").startswith("asyncio")


def test_an_unknown_loop_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_EVENT_LOOP": "trio"})
    assert any(p.startswith("BRIDGE_EVENT_LOOP:") for p in caught.value.problems)


def test_uvloop_missing_is_a_startup_error_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    with pytest.raises(StartupError, match="pip install uvloop, or set BRIDGE_EVENT_LOOP=asyncio"):
        loop_factory("uvloop")
