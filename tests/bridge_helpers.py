"""Run the real bridge app in-process on a free loopback port, for integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from bridge.app import Bridge, bound_port, make_runner
from bridge.config import Config, Role
from bridge.tracing import Tracing


@dataclass
class RunningBridge:
    bridge: Bridge
    url: str


@asynccontextmanager
async def running_bridge(
    config: Config,
    roles: Sequence[Role] = ("ingest",),
    *,
    wait_ready: bool = True,
    tracing: Tracing | None = None,
) -> AsyncIterator[RunningBridge]:
    bridge = Bridge(config, list(roles), tracing=tracing or Tracing())
    runner = make_runner(bridge, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        if wait_ready:
            async with asyncio.timeout(20):
                while not bridge.ready():
                    await asyncio.sleep(0.05)
        yield RunningBridge(bridge, f"http://127.0.0.1:{bound_port(runner)}")
    finally:
        # The bridge's own shutdown is bounded (BRIDGE_SHUTDOWN_TIMEOUT_S); a stop that
        # hangs past that fails the test here, naming itself, rather than the whole run.
        limit = config.shutdown_timeout_s + 20
        try:
            async with asyncio.timeout(limit):
                await runner.cleanup()
        except TimeoutError:
            raise AssertionError(f"the bridge did not stop within {limit:.0f} s") from None
