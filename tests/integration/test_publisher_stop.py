"""Stopping the bridge while its producer is still connecting closes that producer."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.config import load
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port that accepts connections and never answers: producer.start() waits."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


async def test_stop_while_connecting_closes_the_producer(silent_broker: int) -> None:
    kafka = load({"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent_broker}"}).kafka
    unraisable: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        publisher = Publisher(kafka, Metrics())
        await publisher.start()
        await asyncio.sleep(0.5)  # inside producer.start(), waiting for an answer
        await publisher.stop(timeout=2)
        del publisher
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert [str(u.exc_value) for u in unraisable if "Unclosed" in str(u.exc_value)] == []
