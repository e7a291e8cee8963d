"""aiokafka settings built from ``KafkaConfig`` (pure), and topic creation (I/O)."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from bridge.config import KafkaConfig, TopicsConfig
from bridge.kafka.size import MAX_RECORD_SIZE

log = structlog.get_logger("bridge.kafka")

_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS

# The command ledger keeps the latest state per commandId (compaction) for 30 days
# (deletion): the window in which a redelivered command is recognised.
LEDGER_TOPIC_CONFIG = {
    "cleanup.policy": "compact,delete",
    "retention.ms": str(30 * 24 * 3600 * 1000),
}

# The channel state keeps the latest state per channel id forever: compaction, no time
# retention (contract section 10).
CHANNEL_STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "retention.ms": "-1"}


def common_settings(kafka: KafkaConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        settings["ssl_context"] = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.security_protocol.startswith("SASL"):
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            settings["sasl_plain_password"] = kafka.sasl_password.reveal()
    return settings


class CachedPartitioner:
    """Kafka's default key -> partition mapping (murmur2, as the Java client), remembered per
    key: channel ids repeat, and aiokafka's murmur2 is pure Python."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        slot = (key, len(all_partitions))
        index = self._cache.get(slot)
        if index is None:
            if len(self._cache) >= self.max_keys:
                self._cache.clear()
            index = self._cache[slot] = (murmur2(key) & 0x7FFFFFFF) % len(all_partitions)
        return all_partitions[index]


def producer_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """acks=all always: a record counts as published only once every in-sync replica has it."""
    return {
        **common_settings(kafka),
        "partitioner": CachedPartitioner(),
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "compression_type": None if kafka.compression == "none" else kafka.compression,
        "linger_ms": kafka.linger_ms,
        # Kafka's own default message.max.bytes; enforced client-side for brokers without one.
        "max_request_size": MAX_RECORD_SIZE,
    }


def consumer_settings(kafka: KafkaConfig, *, group: str | None) -> dict[str, Any]:
    settings = {
        **common_settings(kafka),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "isolation_level": "read_uncommitted",
    }
    # JoinGroup is held for up to session_timeout/2: a shorter request timeout loops forever.
    settings["request_timeout_ms"] = max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5000)
    return settings


async def ensure_topics(
    kafka: KafkaConfig,
    names: Iterable[str],
    *,
    compacted: Iterable[str] = (),
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics if missing (never rely on auto-creation); existing ones are kept.
    ``compacted`` topics get the ledger's config, ``configs`` names others by topic."""
    compacted = set(compacted)
    configs = configs or {}
    admin = AIOKafkaAdminClient(**common_settings(kafka))
    await admin.start()
    try:
        topics = [
            NewTopic(
                name=name,
                num_partitions=kafka.topic_partitions,
                replication_factor=kafka.replication_factor,
                topic_configs=dict(
                    configs.get(name, LEDGER_TOPIC_CONFIG if name in compacted else {})
                ),
            )
            for name in dict.fromkeys(names)
        ]
        response = await admin.create_topics(topics)
        for name, code, *_ in getattr(response, "topic_errors", []):
            if code not in (0, _TOPIC_EXISTS):
                raise RuntimeError(
                    f"cannot create Kafka topic {name!r}: Kafka error code {code} (check "
                    "BRIDGE_KAFKA_REPLICATION_FACTOR and BRIDGE_KAFKA_TOPIC_PARTITIONS, or "
                    "create the topics yourself and set BRIDGE_KAFKA_CREATE_TOPICS=false)"
                )
            log.info("topic ready", topic=name, created=code == 0)
    finally:
        await admin.close()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` from fresh metadata of every topic; [] while it does not
    exist. A consumer's own metadata holds only the topics it tracks: Kafka answers the
    empty topic list aiokafka starts with by no topics (the embedded broker by all)."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


def all_topics(topics: TopicsConfig) -> list[str]:
    return [
        topics.events,
        topics.commands,
        topics.results,
        topics.dead_letter,
        topics.ledger,
        topics.channel_state,
    ]
