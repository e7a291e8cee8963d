"""Prometheus metrics, one registry per running app (so tests can run several in a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Counter", "Gauge", "Histogram", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
_FOLLOW_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Ingest.
        self.webhook_requests = Counter(
            "bridge_webhook_requests",
            "Webhook requests by outcome",
            ["outcome"],
            registry=r,
        )
        self.webhook_duplicates = Counter(
            "bridge_webhook_duplicates",
            "Webhooks answered 2xx without publishing again (request id seen)",
            registry=r,
        )
        self.webhook_content_type_mismatches = Counter(
            "bridge_webhook_content_type_mismatch",
            "Signed webhooks accepted although their Content-Type is not JSON",
            registry=r,
        )
        self.webhook_deliveries_in_flight = Gauge(
            "bridge_webhook_deliveries_in_flight",
            "Webhook records in the producer and not yet settled by Kafka (also after a 503)",
            registry=r,
        )
        self.webhook_body_bytes = Histogram(
            "bridge_webhook_body_bytes", "Webhook body sizes", buckets=_SIZE_BUCKETS, registry=r
        )
        self.publish_seconds = Histogram(
            "bridge_publish_seconds",
            "Time from produce to Kafka acknowledgement (acks=all)",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_failures = Counter(
            "bridge_publish_failures", "Records Kafka did not acknowledge", ["topic"], registry=r
        )
        self.kafka_connected = Gauge(
            "bridge_kafka_connected", "1 while the client reaches Kafka", ["client"], registry=r
        )
        self.http_connections_timed_out = Counter(
            "bridge_http_connections_timed_out",
            "Connections the server closed: request head incomplete in time (headers) "
            "or idle between requests (idle)",
            ["phase"],
            registry=r,
        )
        for phase in ("headers", "idle"):
            self.http_connections_timed_out.labels(phase)
        # Commands.
        self.commands = Counter(
            "bridge_commands",
            "Commands by action and final outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.commands_in_flight = Gauge(
            "bridge_commands_in_flight", "Commands being executed", registry=r
        )
        self.dead_letters = Counter(
            "bridge_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.bird_requests = Histogram(
            "bridge_bird_request_seconds",
            "Bird API call latency by operation and HTTP status",
            ["operation", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bird_retries = Counter(
            "bridge_bird_retries", "Bird API calls retried", ["operation", "reason"], registry=r
        )
        self.follow_seconds = Histogram(
            "bridge_create_follow_seconds",
            "Time from Bird's create answer to the channel's final status",
            ["outcome"],
            buckets=_FOLLOW_BUCKETS,
            registry=r,
        )
        # Channel state and reconciliation (contract section 10).
        self.channel_state_events = Counter(
            "bridge_channel_state_events",
            "Channel events folded into the channel state, by decision "
            "(write, older, same, unordered, not_a_channel)",
            ["decision"],
            registry=r,
        )
        self.reconcile_channels_seen = Counter(
            "bridge_reconcile_channels_seen",
            "Channels listed at Bird by reconciliation",
            ["workspace"],
            registry=r,
        )
        self.reconcile_drift = Counter(
            "bridge_reconcile_drift",
            "Channels reconciliation found the state did not know (created) or knew older "
            "(updated); one event published for each",
            ["workspace", "kind"],
            registry=r,
        )
        self.reconcile_last_success = Gauge(
            "bridge_reconcile_last_success_timestamp_seconds",
            "Unix time of the last successful reconciliation of a workspace",
            ["workspace"],
            registry=r,
        )
        self.reconcile_failures = Counter(
            "bridge_reconcile_failures",
            "Reconciliations of a workspace that failed (nothing published for it)",
            ["workspace"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
