"""The start-up objects are frozen out of the collector's full passes while the bridge
serves, after the garbage start-up left is collected, and given back at shutdown."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from bridge.app import Bridge, serve
from bridge.collector import freeze_startup_objects, unfreeze
from tests.kafka_helpers import bridge_config


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_freezes_what_lives_and_collects_start_up_garbage_first() -> None:
    garbage, kept = Node(), Node()
    garbage_ref = weakref.ref(garbage)
    del garbage
    frozen = freeze_startup_objects()
    assert frozen == gc.get_freeze_count() > 0
    assert garbage_ref() is None  # collected, not frozen for ever
    # A full pass now walks only what is made after the freeze: not what lives.
    assert not any(o is kept for o in gc.get_objects())
    assert len(gc.get_objects()) < frozen
    unfreeze()
    assert gc.get_freeze_count() == 0
    assert any(o is kept for o in gc.get_objects())


async def test_serve_freezes_once_serving_and_unfreezes_at_shutdown() -> None:
    # A Kafka nobody listens on: the publisher keeps retrying in the back, serving goes on.
    config = bridge_config("127.0.0.1:9", BRIDGE_SHUTDOWN_TIMEOUT_S="5")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(Bridge(config, ["ingest"]), stop=stop))
    async with asyncio.timeout(10):
        while gc.get_freeze_count() == 0:
            assert not task.done(), task
            await asyncio.sleep(0.02)
    stop.set()
    async with asyncio.timeout(15):
        await task
    assert gc.get_freeze_count() == 0
