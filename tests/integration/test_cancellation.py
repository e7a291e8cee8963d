"""A task that stops an aiokafka consumer stops on one cancel that lands inside the
consumer's ``stop()`` (``bridge.tasks``): aiokafka swallows a cancel aimed at its caller
there, ``stop_client`` raises it again. Against the real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from bridge.kafka.clients import start_client, stop_client
from tests.kafka_cluster import Broker

pytestmark = pytest.mark.integration


async def test_one_cancel_inside_a_consumer_stop_stops_the_task(broker: Broker) -> None:
    stopping = asyncio.Event()
    rounds = 0

    async def loop() -> None:  # as a periodic reconciliation reads the state topic
        nonlocal rounds
        while True:
            rounds += 1
            consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
            await start_client(consumer)
            try:
                await asyncio.sleep(0.01)
            finally:
                stopping.set()
                await stop_client(consumer)

    task = asyncio.create_task(loop())
    await stopping.wait()
    task.cancel()  # lands in the consumer's stop()
    done, _ = await asyncio.wait({task}, timeout=5)
    while not task.done():  # end it, then fail
        task.cancel()
        await asyncio.wait({task}, timeout=0.3)
    assert done, f"one cancel did not stop the loop: it ran {rounds} rounds"
    assert task.cancelled()
    assert rounds == 1
