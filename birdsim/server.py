"""Run the simulator in-process (I/O): ``async with SimulatorServer(settings) as sim: sim.url``."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from birdsim.app import create_app
from birdsim.edge import SIMULATOR
from birdsim.runtime import Simulator
from birdsim.settings import SimulatorSettings

# Hanging ("timeout") requests are released on shutdown; nothing else should take long.
_SHUTDOWN_TIMEOUT_S = 5.0


class SimulatorServer:
    """The simulator on a TCP port; ``port=0`` picks a free one (then see ``port`` / ``url``)."""

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.settings = settings or SimulatorSettings()
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.app = create_app(self.settings)
        self._runner: web.AppRunner | None = None
        self._stopped = False

    @property
    def simulator(self) -> Simulator:
        """The live state, faults and logs, for programmatic inspection."""
        return self.app[SIMULATOR]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43127`` (use it as the Bird API URL)."""
        if self.port is None:
            raise RuntimeError("the simulator is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; a server runs once (create a new one to start again)."""
        if self._runner is not None:
            return
        if self._stopped:
            raise RuntimeError("this SimulatorServer was stopped; create a new one")
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Idempotent: stops listening, releases hanging requests, cancels background tasks."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._stopped = True
            await runner.cleanup()
        self.port = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
