"""``bridge dev`` end to end, as a newcomer runs it: one process, then `bridge command`,
then Ctrl-C (or a SIGKILL), and nothing is left running."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bridge.kafka.embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BRIDGE = str(Path(sys.executable).parent / "bridge")


def start_dev(log: Path, kafka: int, port: int, sim: int) -> subprocess.Popen[bytes]:
    """``bridge dev`` as a terminal runs it: the leader of its own foreground process group."""
    with open(log, "wb") as out:
        return subprocess.Popen(
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
            start_new_session=True,
        )


async def wait_for_banner(dev: subprocess.Popen[bytes], log: Path, port: int) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        while "Try it" not in (text := await asyncio.to_thread(log.read_text)):
            assert dev.poll() is None, text
            await asyncio.sleep(0.2)
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            assert response.status == 200


def broker_of(dev: subprocess.Popen[bytes]) -> int:
    """The pid of the embedded broker ``dev`` started (its child running tansu)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == dev.pid and b"tansu" in cmdline:
            return int(stat.parent.name)
    raise AssertionError("no broker process under bridge dev")


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited


async def gone(pid: int, within: float) -> bool:
    """Whether ``pid`` stops running within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if not running(pid):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_bridge_dev_wires_everything_and_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    kafka, port, sim = free_port(), free_port(), free_port()
    log = tmp_path / "dev.log"
    dev = start_dev(log, kafka, port, sim)
    broker = 0
    try:
        await wait_for_banner(dev, log, port)
        broker = broker_of(dev)
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
        # Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
        os.killpg(dev.pid, signal.SIGINT)
        code = await asyncio.to_thread(dev.wait, 30)
    text = log.read_text()
    assert code == 0, text
    assert "created channel.created subscription" in text
    assert "outcome=published" in text  # the simulator's signed deliveries were verified
    assert "dev-signing-key" not in text
    # The bridge drained against a live broker: no connection errors, no traceback.
    # (The simulator's delivery lines carry error=None.)
    trouble = re.compile(r"\[(error|critical)|error=(?!None)|Traceback|Unable connect", re.I)
    troubled = [line for line in text.splitlines() if trouble.search(line)]
    assert troubled == [], text
    assert "stopped" in text
    assert await gone(broker, within=10), "the embedded broker outlived bridge dev"


async def test_a_killed_bridge_dev_leaves_no_broker_behind(tmp_path: Path) -> None:
    kafka, port, sim = free_port(), free_port(), free_port()
    log = tmp_path / "dev.log"
    dev = start_dev(log, kafka, port, sim)
    try:
        await wait_for_banner(dev, log, port)
        broker = broker_of(dev)
    finally:
        dev.kill()  # SIGKILL to bridge dev alone (the OOM killer, `kill -9 <pid>`)
        await asyncio.to_thread(dev.wait, 30)
    assert await gone(broker, within=15), "the embedded broker outlived a SIGKILLed bridge dev"


def _read_until(fd: int, needle: bytes, seen: bytearray, deadline: float) -> bool:
    """Read the terminal's output into ``seen`` until ``needle`` shows or it closes."""
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every process on the terminal has gone
            return needle in seen
        if not chunk:
            return needle in seen
        seen += chunk
    return needle in seen


def test_ctrl_c_on_make_run_in_a_terminal_exits_zero_without_interrupt(tmp_path: Path) -> None:
    """The README's `make run`, in a real terminal (a pty), stopped by typing Ctrl-C: the
    terminal's SIGINT goes to the foreground group, where make itself would otherwise
    also get it and end with `make: *** [run] Interrupt`."""
    kafka, port, sim = free_port(), free_port(), free_port()
    venv = Path(sys.executable).parent.parent
    root = Path(__file__).resolve().parents[2]
    argv = [
        "make",
        "--no-print-directory",
        "-C",
        str(root),
        # The venv exists: never rebuild it from a test.
        "-o",
        f"{venv}/bin/bridge",
        f"VENV={venv}",
        f"DEV_ARGS=--kafka-port {kafka} --port {port} --simulator-port {sim}",
        "run",
    ]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        try:
            os.execvp("make", argv)  # noqa: S606 (argv is fixed above)
        finally:
            os._exit(127)
    seen = bytearray()
    try:
        started = _read_until(fd, b"Try it", seen, time.monotonic() + 90)
        if started:
            os.write(fd, b"\x03")  # Ctrl-C, as typed
            _read_until(fd, b"\x00never", seen, time.monotonic() + 30)
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert started, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "Interrupt" not in text
    assert "Traceback" not in text
    assert "stopped" in text
