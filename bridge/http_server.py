"""The HTTP server's connection deadlines (I/O, on the event loop).

aiohttp closes idle keep-alive connections after ``keepalive_timeout`` (set in
``build_app``), but gives a connection that never completes its request head just as
long. Here a request head must arrive within ``BRIDGE_HTTP_HEADER_TIMEOUT_S``: from the
connection's start for its first request, and from the first byte of each later one.
One timer per connection at most, none for a request whose head comes in one read.
It reads aiohttp's ``RequestHandler`` internals (``_request_count``, ``_waiter``,
``_process_keepalive``; 3.14, as locked): tests/security/test_http_deadlines.py fails
if they change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

Phase = Literal["headers", "idle"]


class HttpServer(web.Server):
    """aiohttp's ``Server`` whose connections get a request-head deadline."""

    def __init__(
        self,
        handler: Any,
        *,
        header_timeout_s: float,
        on_timeout: Callable[[Phase], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.on_timeout = on_timeout

    def __call__(self) -> RequestHandler:
        return HeadDeadlineHandler(self, loop=self._loop, **self._kwargs)


class HeadDeadlineHandler(RequestHandler):
    """One connection: closed when its request head is incomplete at the deadline.

    ``_head_pending`` is true from the connection's start until a head completes, and
    again from the first byte of the next request on a kept-alive connection.
    """

    __slots__ = ("_head_handle", "_head_pending", "_head_timeout_s", "_on_timeout")

    def __init__(self, manager: HttpServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = manager.header_timeout_s
        self._on_timeout = manager.on_timeout
        self._head_pending = True
        self._head_handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_handle = self._loop.call_later(self._head_timeout_s, self._head_deadline)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            # A head is complete (or refused with a 400): its deadline is met.
            self._head_pending = False
            if self._head_handle is not None:
                self._head_handle.cancel()
                self._head_handle = None
        elif data and not self._head_pending and self._waiter is not None:
            # The first bytes of the next request on a kept-alive connection (between
            # requests the server waits for a message; while one runs, it does not).
            self._head_pending = True
            self._head_handle = self._loop.call_later(self._head_timeout_s, self._head_deadline)

    def _head_deadline(self) -> None:
        self._head_handle = None
        if self._head_pending and not self._force_close and not self._close:
            self._on_timeout("headers")
            self.force_close()

    def _process_keepalive(self) -> None:
        # aiohttp's keep-alive timer; count the connections it closes.
        open_before = not self._force_close
        super()._process_keepalive()
        if open_before and self._force_close:
            self._on_timeout("headers" if self._head_pending else "idle")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_handle is not None:
            self._head_handle.cancel()
            self._head_handle = None
        super().connection_lost(exc)


class HttpRunner(web.AppRunner):
    """An ``AppRunner`` serving with ``HttpServer``; otherwise aiohttp's, unchanged."""

    __slots__ = ("_header_timeout_s", "_on_timeout")

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout_s: float,
        on_timeout: Callable[[Phase], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._on_timeout = on_timeout

    async def _make_server(self) -> web.Server:
        # The application builds aiohttp's server (start-up, handler_args, ...); serve
        # the same handler and arguments with the deadline added.
        plain = await super()._make_server()
        return HttpServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            header_timeout_s=self._header_timeout_s,
            on_timeout=self._on_timeout,
            **plain._kwargs,
        )
