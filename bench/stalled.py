"""Stalled connections: what connections that never finish their request head cost a
``bridge run --role ingest``, with and without the header deadline.

One invocation starts the embedded broker and, one after the other, two bridges: "no
deadline" (``BRIDGE_HTTP_HEADER_TIMEOUT_S`` and ``BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S`` at
3630 s, aiohttp's keep-alive default and so what the bridge did before it had a header
deadline) and "deadline" (the defaults, unless ``--header-timeout`` is given). Against
each it opens ``--connections`` connections from this process (a third send nothing, a
third half a request line, a third a request line and part of the headers), then
reports the bridge's open file descriptors and RSS before, with all of them open, and
``--header-timeout`` + 3 s later, with how many the bridge closed and its
``bridge_http_connections_timed_out_total{phase="headers"}``.

    python -m bench.stalled [--connections 2000] [--header-timeout 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from pathlib import Path

import aiohttp

from bench.common import HOST, Child, banner, bridge_argv, bridge_env, rss_mb, table, verdict
from bridge import logs
from bridge.kafka.embedded import EmbeddedBroker, free_port

STARTS = (b"", b"POST /webhooks/bi", b"POST /webhooks/bird HTTP/1.1\r\nHost: bridge\r\nX-A: ")
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def open_stalled(port: int, count: int) -> list[Connection]:
    async def one(i: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(STARTS[i % len(STARTS)])
        await writer.drain()
        return reader, writer

    connections: list[Connection] = []
    for first in range(0, count, 100):
        batch = range(first, min(first + 100, count))
        connections += await asyncio.gather(*(one(i) for i in batch))
    return connections


def closed_by_server(connections: list[Connection]) -> int:
    return sum(1 for reader, _ in connections if reader.at_eof() or reader.exception())


async def timed_out_headers(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{HOST}:{port}/metrics") as response,
    ):
        text = await response.text()
    prefix = 'bridge_http_connections_timed_out_total{phase="headers"} '
    return next((line.removeprefix(prefix) for line in text.splitlines() if prefix in line), "-")


async def measure(
    name: str, bootstrap: str, work: Path, args: argparse.Namespace, timeout_s: float
) -> list[str]:
    port = free_port()
    env = bridge_env(
        bootstrap,
        port,
        uuid.uuid4().hex[:8],
        BRIDGE_HTTP_HEADER_TIMEOUT_S=str(timeout_s),
        BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S=str(max(timeout_s, 75)),
    )
    async with Child(name, bridge_argv("ingest"), port=port, env=env, log_dir=work) as bridge:
        await asyncio.sleep(1)
        fds_before, rss_before = open_fds(bridge.pid), rss_mb(bridge.pid)
        connections = await open_stalled(port, args.connections)
        try:
            await asyncio.sleep(1)
            fds_held, rss_held = open_fds(bridge.pid), rss_mb(bridge.pid)
            closed_early = closed_by_server(connections)
            await asyncio.sleep(args.header_timeout + 2)
            fds_after, rss_after = open_fds(bridge.pid), rss_mb(bridge.pid)
            closed = closed_by_server(connections)
            counted = await timed_out_headers(port)
        finally:
            for _, writer in connections:
                writer.close()
    return [
        name,
        f"{fds_before}",
        f"{fds_held} (+{fds_held - fds_before})",
        f"{fds_after}",
        f"{rss_before:.1f}",
        f"{rss_held:.1f} (+{rss_held - rss_before:.1f})",
        f"{rss_after:.1f}",
        f"{closed_early}",
        f"{closed}",
        counted,
    ]


async def main(args: argparse.Namespace) -> int:
    logs.configure(fmt="console", level="warning")
    work = Path(tempfile.mkdtemp(prefix="bench-stalled-"))
    print(banner("Stalled connections", "bench.stalled"), flush=True)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        rows = [
            await measure("no deadline (3630 s)", broker.bootstrap, work, args, 3630),
            await measure(
                f"deadline ({args.header_timeout:g} s)",
                broker.bootstrap,
                work,
                args,
                args.header_timeout,
            ),
        ]
    wait = f"+{args.header_timeout + 3:g} s"
    headers = [
        f"{args.connections} stalled connections",
        "fds before",
        "fds held",
        f"fds {wait}",
        "RSS MB before",
        "RSS MB held",
        f"RSS MB {wait}",
        "closed at 1 s",
        f"closed at {wait}",
        "metric headers",
    ]
    print(table(headers, rows))
    ok = rows[1][8] == str(args.connections) and rows[0][8] == "0"
    print(f"{verdict(ok)}  the deadline closed every stalled connection; without it none")
    print(f"logs: {work}")
    return 0 if ok else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stalled", description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
