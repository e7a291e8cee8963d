"""An embedded broker whose data survives its own SIGKILL: Tansu on S3 storage (moto, loopback)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from bridge.kafka.embedded import EmbeddedBroker, free_port


@contextmanager
def persistent_broker() -> Iterator[EmbeddedBroker]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker: EmbeddedBroker | None = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                # Create the bucket; the URL is our own loopback server.
                request = urllib.request.Request(f"{endpoint}/tansu", method="PUT")  # noqa: S310
                urllib.request.urlopen(request, timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        broker = EmbeddedBroker(
            storage="s3://tansu/",
            env={
                "AWS_ENDPOINT": endpoint,
                "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        )
        broker.start()
        yield broker
    finally:
        if broker is not None:
            with suppress(Exception):
                broker.stop()
        s3.terminate()
        s3.wait(10)
