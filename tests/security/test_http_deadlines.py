"""Connection deadlines of the real bridge on real sockets: a request head must arrive in
time (``BRIDGE_HTTP_HEADER_TIMEOUT_S``) and an idle keep-alive connection is closed
(``BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S``), while a client that keeps sending requests keeps
its connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.bridge_helpers import RunningBridge, running_bridge
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 1.5
GET = b"GET /healthz HTTP/1.1\r\nHost: bridge.example.org\r\n\r\n"


@pytest_asyncio.fixture(loop_scope="session")
async def bridge(broker: Broker) -> AsyncIterator[RunningBridge]:
    """A bridge of its own per test: each test counts its closed connections."""
    config = bridge_config(
        broker.bootstrap,
        BRIDGE_HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT),
        BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S=str(KEEPALIVE_TIMEOUT),
        BRIDGE_WEBHOOK_READ_TIMEOUT_S="1",
    )
    async with running_bridge(config) as app:
        yield app


def port_of(app: RunningBridge) -> int:
    return int(app.url.rsplit(":", 1)[1])


def timed_out(app: RunningBridge, phase: str) -> float | None:
    registry = app.bridge.metrics.registry
    return registry.get_sample_value("bridge_http_connections_timed_out_total", {"phase": phase})


async def closed_after(reader: asyncio.StreamReader, opened: float, limit: float) -> float:
    """Seconds from ``opened`` until the server closed the connection (EOF or reset);
    anything the server sends first (answers) is read and dropped."""
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    return time.monotonic() - opened


async def read_status(reader: asyncio.StreamReader) -> int:
    """One answer with a Content-Length body; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.partition(":")[2]) for line in lines if line.lower().startswith("content-length")
    )
    await reader.readexactly(length)
    return int(lines[0].split(" ")[1])


async def test_connections_without_a_complete_request_head_are_closed_at_the_deadline(
    bridge: RunningBridge,
) -> None:
    # Nothing at all, half a request line, a request line and part of the headers.
    starts = [b"", b"POST /webhooks/bi", b"POST /webhooks/bird HTTP/1.1\r\nHost: bridge\r\nX-A: "]
    writers, closing = [], []
    for i in range(200):
        opened = time.monotonic()  # before: the server may accept before the client resumes
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bridge))
        writer.write(starts[i % 3])
        await writer.drain()
        writers.append(writer)
        closing.append(asyncio.create_task(closed_after(reader, opened, 10)))
    try:
        # Meanwhile, the bridge serves everyone else as usual.
        async with aiohttp.ClientSession() as session:
            body, headers = delivery(channel_event())
            async with session.post(
                bridge.url + "/webhooks/bird", data=body, headers=headers
            ) as response:
                assert response.status == 204
        waits = await asyncio.gather(*closing)
    finally:
        for writer in writers:
            writer.close()
    assert min(waits) >= HEADER_TIMEOUT * 0.9
    assert max(waits) < HEADER_TIMEOUT + 1.5
    assert timed_out(bridge, "headers") == 200
    assert timed_out(bridge, "idle") == 0


async def test_a_kept_alive_connection_serves_requests_across_pauses_until_idle_too_long(
    bridge: RunningBridge,
) -> None:
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bridge))
    try:
        # Pauses longer than the header deadline and, together, than the keep-alive
        # timeout: each request starts its own deadlines, on the same connection.
        for _ in range(3):
            writer.write(GET)
            await writer.drain()
            assert await read_status(reader) == 200
            await asyncio.sleep(HEADER_TIMEOUT * 1.6)
        assert time.monotonic() - opened > KEEPALIVE_TIMEOUT + HEADER_TIMEOUT
        # Then idle: closed after the keep-alive timeout, counted as idle.
        asked = time.monotonic()
        writer.write(GET)
        await writer.drain()
        assert await read_status(reader) == 200
        waited = await closed_after(reader, asked, 10)
    finally:
        writer.close()
    assert KEEPALIVE_TIMEOUT * 0.9 <= waited < KEEPALIVE_TIMEOUT + 1.5
    assert (timed_out(bridge, "idle"), timed_out(bridge, "headers")) == (1, 0)


async def test_a_later_request_that_stalls_in_its_head_is_closed_from_its_first_byte(
    bridge: RunningBridge,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bridge))
    try:
        writer.write(GET)
        await writer.drain()
        assert await read_status(reader) == 200
        await asyncio.sleep(HEADER_TIMEOUT * 1.6)  # idle, within the keep-alive timeout
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHo")
        await writer.drain()
        waited = await closed_after(reader, started, 10)
    finally:
        writer.close()
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 1.0
    assert (timed_out(bridge, "headers"), timed_out(bridge, "idle")) == (1, 0)


async def test_a_keep_alive_webhook_client_keeps_one_connection(bridge: RunningBridge) -> None:
    """Deliveries with pauses shorter than the keep-alive timeout reuse one connection."""
    created = 0

    async def on_create(*_: object) -> None:
        nonlocal created
        created += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]
    ) as session:
        for _ in range(3):
            body, headers = delivery(channel_event())
            async with session.post(
                bridge.url + "/webhooks/bird", data=body, headers=headers
            ) as response:
                assert response.status == 204
            await asyncio.sleep(HEADER_TIMEOUT * 1.6)
    assert created == 1
    assert (timed_out(bridge, "headers"), timed_out(bridge, "idle")) == (0, 0)


async def test_a_slow_body_still_gets_408_from_the_read_deadline(bridge: RunningBridge) -> None:
    """The head deadline ends with the head: a body is the read deadline's (1 s) business."""
    body, headers = delivery(channel_event())
    head = "POST /webhooks/bird HTTP/1.1\r\nHost: bridge\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(bridge))
    started = time.monotonic()
    try:
        writer.write(head.encode("latin-1") + body[:1])
        await writer.drain()
        async with asyncio.timeout(5):
            head_back = await reader.readuntil(b"\r\n\r\n")
        elapsed = time.monotonic() - started
        reason = orjson.loads(await reader.read(65536))
    finally:
        writer.close()
    assert head_back.startswith(b"HTTP/1.1 408 ")
    assert reason == {"error": "body not received within 1s"}
    assert 0.9 <= elapsed < 3
    assert timed_out(bridge, "headers") == 0
