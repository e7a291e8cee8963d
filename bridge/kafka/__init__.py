"""Kafka adapters: client settings, topic creation, the embedded broker."""
