"""A small asyncio TCP proxy for fault tests: pass, stall or drop on command (loopback only).

- ``pass``: bytes flow both ways.
- ``stall``: nothing is forwarded any more, but every socket stays open and new connections
  are still accepted (a network that silently stops delivering, as after a partition).
  Bytes read before the stall are held and delivered, in order, once it ends.
- ``drop``: every connection is closed at once (reset) and new connections are refused
  (the listening socket is closed; it listens again on the same port on ``resume``).

It runs in the caller's event loop::

    async with TcpProxy("127.0.0.1", broker_port, listen_port=proxy_port) as proxy:
        proxy.stall(); ...; proxy.resume()
        await proxy.drop(); ...; await proxy.resume_listening()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "stall", "drop"]
_CHUNK = 64 * 1024


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0), as a broken network path would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards ``listen_host:listen_port`` to ``target_host:target_port``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.mode: Mode = "pass"
        self.accepted = 0
        self.forwarded_bytes = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.listen_host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._close_listener()
        self._abort_all()
        self._flowing.set()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- modes -----------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding; keep every socket open and keep accepting."""
        self.mode = "stall"
        self._flowing.clear()

    async def drop(self) -> None:
        """Reset every connection and refuse new ones until ``resume``."""
        self.mode = "drop"
        await self._close_listener()
        self._abort_all()

    async def resume(self) -> None:
        """Back to ``pass`` from either fault: forward again, listen again."""
        if self._server is None:
            await self._listen()
        self.mode = "pass"
        self._flowing.set()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # --- internals ---------------------------------------------------------------------

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await server.wait_closed()

    def _abort_all(self) -> None:
        connections, self._connections = self._connections, set()
        for connection in connections:
            connection.abort()
            for task in connection.tasks:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":  # raced with drop(): refuse
            _abort(writer)
            return
        self.accepted += 1
        connection = _Connection(client=writer)
        self._connections.add(connection)
        try:
            try:
                async with asyncio.timeout(5):
                    up_reader, up_writer = await asyncio.open_connection(*self.target)
            except (OSError, TimeoutError):
                connection.abort()
                return
            connection.upstream = up_writer
            if connection not in self._connections:  # dropped while connecting
                connection.abort()
                return
            connection.tasks = [
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            ]
            # When one direction ends, the other has nothing left to do.
            await asyncio.wait(connection.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in connection.tasks:
                task.cancel()
            await asyncio.gather(*connection.tasks, return_exceptions=True)
            self._connections.discard(connection)
            connection.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self._flowing.wait()  # read during a stall: hold it until resumed
                writer.write(data)
                await writer.drain()
                self.forwarded_bytes += len(data)
        except (ConnectionError, OSError):
            return
