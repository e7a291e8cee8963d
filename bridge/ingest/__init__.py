"""Webhook ingest: verify Bird's signed webhooks, normalize, publish to Kafka."""
