"""aiokafka settings built from ``KafkaConfig`` (pure), and topic creation (I/O)."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.config import KafkaConfig, TopicsConfig

log = structlog.get_logger("bridge.kafka")

_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS

# The command ledger keeps the latest state per commandId (compaction) for 30 days
# (deletion): the window in which a redelivered command is recognised.
LEDGER_TOPIC_CONFIG = {
    "cleanup.policy": "compact,delete",
    "retention.ms": str(30 * 24 * 3600 * 1000),
}


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


def producer_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """acks=all always: a record counts as published only once every in-sync replica has it."""
    return {
        **common_settings(kafka),
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "compression_type": None if kafka.compression == "none" else kafka.compression,
        "linger_ms": kafka.linger_ms,
        # Kafka's own default message.max.bytes; enforced client-side for brokers without one.
        "max_request_size": 1024 * 1024,
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
    kafka: KafkaConfig, names: Iterable[str], *, compacted: Iterable[str] = ()
) -> None:
    """Create the topics if missing (never rely on auto-creation); existing ones are kept."""
    compacted = set(compacted)
    admin = AIOKafkaAdminClient(**common_settings(kafka))
    await admin.start()
    try:
        topics = [
            NewTopic(
                name=name,
                num_partitions=kafka.topic_partitions,
                replication_factor=kafka.replication_factor,
                topic_configs=LEDGER_TOPIC_CONFIG if name in compacted else {},
            )
            for name in dict.fromkeys(names)
        ]
        response = await admin.create_topics(topics)
        for name, code, *_ in getattr(response, "topic_errors", []):
            if code not in (0, _TOPIC_EXISTS):
                raise RuntimeError(f"cannot create Kafka topic {name!r}: error code {code}")
            log.info("topic ready", topic=name, created=code == 0)
    finally:
        await admin.close()


def all_topics(topics: TopicsConfig) -> list[str]:
    return [topics.events, topics.commands, topics.results, topics.dead_letter, topics.ledger]
