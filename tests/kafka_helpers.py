"""Test helpers that talk to the real broker: a bridge config for it, and reading records back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from bridge import config as config_module
from bridge.config import Config
from bridge.kafka.clients import stop_client, topic_partitions
from bridge.kafka.embedded import EMBEDDED_SETTINGS
from tests.kafka_cluster import KafkaCluster

SIGNING_KEY = "test-signing-key"
PUBLIC_URL = "https://bridge.example.org/webhooks/bird"


# The embedded broker (Tansu) only: no idempotent producer, one node (EMBEDDED_SETTINGS),
# and it holds a JoinGroup for half the session timeout, so its tests use short ones.
EMBEDDED_TEST_SETTINGS: dict[str, str] = {
    **EMBEDDED_SETTINGS,
    "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "2000",
    "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "BRIDGE_KAFKA_REQUEST_TIMEOUT_MS": "5000",
}

# Apache Kafka brokers started by the fixtures, by bootstrap: the bridge runs on them with
# its production defaults, only the replication factor follows the cluster's size.
_APACHE_KAFKA: dict[str, dict[str, str]] = {}


def register_broker(cluster: KafkaCluster) -> None:
    settings = {"BRIDGE_KAFKA_REPLICATION_FACTOR": str(cluster.replication_factor)}
    for bootstrap in [cluster.bootstrap, *map(cluster.listener_bootstrap, cluster.listeners)]:
        _APACHE_KAFKA[bootstrap] = settings


def broker_settings(bootstrap: str) -> dict[str, str]:
    """The bridge's broker settings for this bootstrap: production defaults on Apache Kafka,
    the embedded broker's own settings on anything else (a Tansu started by a test)."""
    return dict(_APACHE_KAFKA.get(bootstrap, EMBEDDED_TEST_SETTINGS))


def broker_env(bootstrap: str, **overrides: str) -> dict[str, str]:
    """Settings for the bridge on this broker, with topic names unique to one test."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **broker_settings(bootstrap),
        "BRIDGE_KAFKA_CONSUMER_GROUP": f"bridge-{suffix}",
        "BRIDGE_TOPIC_EVENTS": f"events-{suffix}",
        "BRIDGE_TOPIC_COMMANDS": f"commands-{suffix}",
        "BRIDGE_TOPIC_RESULTS": f"results-{suffix}",
        "BRIDGE_TOPIC_DEAD_LETTER": f"dlq-{suffix}",
        "BRIDGE_TOPIC_LEDGER": f"ledger-{suffix}",
        "BRIDGE_TOPIC_CHANNEL_STATE": f"state-{suffix}",
        "BRIDGE_TOPIC_LEDGER_SNAPSHOTS": f"snapshots-{suffix}",
        "BRIDGE_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": "0",
        "BRIDGE_SHUTDOWN_TIMEOUT_S": "10",
        "BRIDGE_LOG_FORMAT": "console",
    }
    env.update(overrides)
    return env


def bridge_config(bootstrap: str, **overrides: str) -> Config:
    return config_module.load(broker_env(bootstrap, **overrides))


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 15.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read every record of ``topic`` from the beginning until ``expect`` arrived (or timeout)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(timeout):
            while len(records) < expect:
                batch: Mapping[Any, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                    timeout_ms=200
                )
                for items in batch.values():
                    records.extend(items)
    except TimeoutError:
        pass
    finally:
        await stop_client(consumer)
    return records


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = await topic_partitions(consumer, topic, wait_s=5.0)
    if found:
        return found
    raise AssertionError(f"topic {topic} does not exist")
