"""``BRIDGE_HTTP_WORKERS=2``: two worker processes share the port, both answer, each
publishes with its own producer, and SIGTERM drains both (the parent exits 0)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from bridge.kafka.clients import ensure_topics
from bridge.kafka.embedded import free_port
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config, broker_env, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            assert process.poll() is None, "the bridge exited while starting"
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def start_two_workers(
    broker: Broker, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], str, Path, str]:
    """``bridge run --role ingest`` with ``BRIDGE_HTTP_WORKERS=2`` on a free port, logging
    JSON to a file: the process, its URL, the log file and the events topic."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
        **broker_env(
            broker.bootstrap,
            BRIDGE_HTTP_HOST="127.0.0.1",
            BRIDGE_HTTP_PORT=str(port),
            BRIDGE_HTTP_WORKERS="2",
            BRIDGE_LOG_LEVEL="info",
            BRIDGE_LOG_FORMAT="json",
        ),
    }
    topic = env["BRIDGE_TOPIC_EVENTS"]
    await ensure_topics(bridge_config(broker.bootstrap).kafka, [topic])
    log_path = tmp_path / "bridge.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--role", "ingest"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log_path, topic


async def test_two_workers_share_the_port_and_drain_together_on_sigterm(
    broker: Broker, tmp_path: Path
) -> None:
    process, url, log_path, topic = await start_two_workers(broker, tmp_path)
    try:
        await wait_ready(url, process)
        # Each worker becomes ready on its own: wait until both answered /readyz.
        # A new connection per request, so the kernel picks a worker each time.
        answered: dict[int, int] = {}
        ids: list[str] = []

        async def post(n: int) -> int:
            body, headers = delivery(channel_event(id=f"ch-{n}"))
            ids.append(headers["messagebird-request-id"])
            connector = aiohttp.TCPConnector(force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(url + "/webhooks/bird", data=body, headers=headers) as response,
            ):
                return response.status

        async with asyncio.timeout(60):
            while True:
                statuses = await asyncio.gather(*(post(len(ids) + n) for n in range(20)))
                for status in statuses:
                    answered[status] = answered.get(status, 0) + 1
                workers = {
                    line.get("worker")
                    for line in log_lines(log_path)
                    if line.get("event") == "webhook" and line.get("status") == 204
                }
                if workers == {0, 1}:
                    break
        # Requests in flight when SIGTERM arrives are still answered by their worker.
        in_flight = [asyncio.create_task(post(len(ids) + n)) for n in range(20)]
        await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        late = await asyncio.gather(*in_flight, return_exceptions=True)
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, log_path.read_text()[-3000:]
    assert set(answered) == {204}, answered
    published = [s for s in late if s == 204]
    refused = [s for s in late if s != 204]
    # A request either got its 204 or no connection at all (the worker had stopped
    # listening); never a 5xx.
    assert all(isinstance(s, aiohttp.ClientError) for s in refused), refused
    lines = log_lines(log_path)
    stopped = {line.get("worker") for line in lines if line.get("event") == "stopped"}
    assert stopped == {0, 1}, lines[-20:]
    assert any(line.get("event") == "workers stopped" for line in lines)
    expected = sum(answered.values()) + len(published)
    records = await read_topic(broker.bootstrap, topic, expect=expected)
    correlation = {dict(r.headers)["correlation-id"].decode() for r in records}
    assert len(records) == expected
    assert correlation <= set(ids)


async def test_workers_stop_when_the_parent_is_killed(broker: Broker, tmp_path: Path) -> None:
    """SIGKILL to the parent (the OOM killer, say): the workers get SIGTERM from the
    kernel, drain and exit, and the port is free again."""
    process, url, log_path, _ = await start_two_workers(broker, tmp_path)
    workers: list[int] = []
    try:
        await wait_ready(url, process)
        started = [line for line in log_lines(log_path) if line.get("event") == "workers started"]
        workers = [int(pid) for pid in started[0]["pids"]] if started else []  # type: ignore[attr-defined]
        assert len(workers) == 2, log_path.read_text()[-2000:]
        process.kill()
        process.wait()
        async with asyncio.timeout(30):
            while any(alive(pid) for pid in workers):
                await asyncio.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    stopped = {line.get("worker") for line in log_lines(log_path) if line.get("event") == "stopped"}
    assert stopped == {0, 1}, log_path.read_text()[-2000:]


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an orphan's zombie is reaped by init, not by us)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_more_than_one_worker_is_refused_beside_the_commands_role() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
        **broker_env("127.0.0.1:1", BRIDGE_HTTP_WORKERS="2"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "run", "--role", "all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "BRIDGE_HTTP_WORKERS: more than one worker serves the ingest role only" in (
        result.stderr
    )
