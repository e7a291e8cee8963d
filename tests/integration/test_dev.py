"""``bridge dev`` end to end, as a newcomer runs it: one process, then `bridge command`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bridge.kafka.embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BRIDGE = str(Path(sys.executable).parent / "bridge")


async def test_bridge_dev_wires_everything(tmp_path: Path) -> None:
    kafka, port, sim = free_port(), free_port(), free_port()
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            [
                BRIDGE,
                "dev",
                "--kafka-port",
                str(kafka),
                "--port",
                str(port),
                "--simulator-port",
                str(sim),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(60):
            while "Try it" not in log.read_text():
                assert dev.poll() is None, log.read_text()
                await asyncio.sleep(0.2)
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
        env = {**os.environ, "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}"}
        result = await asyncio.to_thread(
            subprocess.run,
            [BRIDGE, "command", "create", "--name", "Newcomer SMS", "--timeout", "60"],
            env=env,
            capture_output=True,
            timeout=90,
            check=False,
        )
        output = result.stdout.decode()
        assert result.returncode == 0, output + result.stderr.decode()
        assert "result com.bird.bridge.connector.create.accepted" in output
        assert "result com.bird.bridge.connector.create.succeeded" in output
        assert "event com.bird.channel.created" in output
        assert "event com.bird.channel.updated" in output
        assert "status=active" in output
    finally:
        dev.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(dev.wait, 30)
    text = log.read_text()
    assert code == 0, text
    assert "created channel.created subscription" in text
    assert "outcome=published" in text  # the simulator's signed deliveries were verified
    assert "dev-signing-key" not in text
