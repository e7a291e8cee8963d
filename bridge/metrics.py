"""Prometheus metrics, one registry per running app (so tests can run several in a process)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

__all__ = [
    "BIRD_STATUS_CLASSES",
    "CONTENT_TYPE_LATEST",
    "DEAD_LETTER_REASONS",
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
_FOLLOW_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
_COMMAND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_EVENT_AGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)

# Label values with a fixed vocabulary (docs/metrics.md lists them).
BIRD_STATUS_CLASSES = ("2xx", "3xx", "4xx", "429", "5xx", "error")
DEAD_LETTER_REASONS = (
    "no_value",
    "not_json",
    "not_an_object",
    "invalid_command",
    "record_too_large",
    "ledger_record_missing",
    "internal_error",
)

LagSource = Callable[[], Mapping[int, int]]


class LoopHistogram(Histogram):
    """A ``Histogram`` observed from the event loop's thread only (the webhook path).

    prometheus_client's ``observe`` takes a lock for the sum and another for the bucket,
    and walks the bounds: about 3 us an observation, three of them per webhook. Here it is
    a bisect and two additions to plain numbers. The samples (``_bucket``, ``_count``,
    ``_sum``, ``_created``) are the same; scraping also runs on the event loop, so it never
    sees half an observation. No exemplars (the bridge sets none)."""

    _counts: list[float]
    _total: float
    _les: list[str]

    def _metric_init(self) -> None:
        super()._metric_init()
        self._counts = [0.0] * len(self._upper_bounds)
        self._total = 0.0
        # Bucket labels as prometheus_client writes them ("0.005", "+Inf"), worked out once.
        self._les = [floatToGoString(b) for b in self._upper_bounds]  # type: ignore[no-untyped-call]

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar is not None:
            raise ValueError("LoopHistogram keeps no exemplars")
        try:
            counts = self._counts
        except AttributeError:  # a parent with labels
            raise ValueError(f"{self._name} metric is missing label values") from None
        # The first bucket whose bound is >= amount (the last bound is +Inf).
        counts[bisect_left(self._upper_bounds, amount)] += 1
        self._total += amount

    def _child_samples(self) -> Iterable[Sample]:
        samples = []
        acc = 0.0
        no_exemplar: Exemplar | None = None
        for le, count in zip(self._les, self._counts, strict=True):
            acc += count
            samples.append(Sample("_bucket", {"le": le}, acc, None, no_exemplar))
        samples.append(Sample("_count", {}, acc, None, None))
        if self._upper_bounds[0] >= 0:
            samples.append(Sample("_sum", {}, self._total, None, None))
        if prometheus_metrics._use_created:
            samples.append(Sample("_created", {}, self._created, None, None))
        return tuple(samples)


class LoopCounter(Counter):
    """A ``Counter`` incremented from the event loop's thread only (the webhook path): a
    plain addition instead of prometheus_client's lock. The same samples (``_total``,
    ``_created``), as for ``LoopHistogram``. No exemplars."""

    _count: float

    def _metric_init(self) -> None:
        super()._metric_init()
        self._count = 0.0

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if amount < 0 or exemplar is not None:
            raise ValueError("LoopCounter takes non-negative amounts and no exemplars")
        try:
            self._count += amount
        except AttributeError:  # a parent with labels
            raise ValueError(f"{self._name} metric is missing label values") from None

    def reset(self) -> None:
        super().reset()
        self._count = 0.0

    def _child_samples(self) -> Iterable[Sample]:
        total = Sample("_total", {}, self._count, None, None)
        if prometheus_metrics._use_created:
            return (total, Sample("_created", {}, self._created, None, None))
        return (total,)


class ConsumerLag(Collector):
    """``bridge_commands_consumer_lag{partition}``, computed at scrape time from ``source``
    (partition -> records): a partition leaves the output when it leaves the source."""

    name = "bridge_commands_consumer_lag"
    documentation = (
        "Records of an assigned commands partition not yet finished by this replica: "
        "the fetch high-water mark minus the next offset it will commit"
    )

    def __init__(self) -> None:
        self.source: LagSource | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["partition"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["partition"])
        if self.source is not None:
            for partition, lag in sorted(self.source().items()):
                family.add_metric([str(partition)], lag)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Ingest.
        self.webhook_requests = LoopCounter(
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
        self.webhook_body_bytes = LoopHistogram(
            "bridge_webhook_body_bytes", "Webhook body sizes", buckets=_SIZE_BUCKETS, registry=r
        )
        self.publish_seconds = LoopHistogram(
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
        self.webhook_responses = LoopCounter(
            "bridge_webhook_responses",
            "Webhook answers by HTTP status code",
            ["code"],
            registry=r,
        )
        self.webhook_event_age = LoopHistogram(
            "bridge_webhook_event_age_seconds",
            "Receipt time minus Bird's timestamp of a published event (updatedAt, else "
            "createdAt); clock skew below 0 counts as 0",
            buckets=_EVENT_AGE_BUCKETS,
            registry=r,
        )
        self.ready = Gauge(
            "bridge_ready", "1 when /readyz answers 200, else 0", ["role"], registry=r
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
        self.command_duration = Histogram(
            "bridge_command_duration_seconds",
            "From a command record's Kafka timestamp to its final result acknowledged by Kafka",
            ["action", "status"],
            buckets=_COMMAND_BUCKETS,
            registry=r,
        )
        self.commands_oldest_unfinished_age = Gauge(
            "bridge_commands_oldest_unfinished_age_seconds",
            "Age (by its Kafka timestamp) of the oldest command fetched and not yet finished; "
            "0 when none",
            registry=r,
        )
        self.consumer_lag = ConsumerLag()
        r.register(self.consumer_lag)
        self.ledger_entries = Gauge(
            "bridge_ledger_entries",
            "Command entries the ledger holds in memory (its idempotency window)",
            registry=r,
        )
        self.ledger_records_after_snapshot = Gauge(
            "bridge_ledger_records_after_snapshot",
            "Ledger records a start would read besides the latest snapshot of the ledger's index",
            registry=r,
        )
        self.dead_letters = Counter(
            "bridge_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        self.bird_requests = Histogram(
            "bridge_bird_request_seconds",
            "Bird API call latency by operation and status class (error: no answer)",
            ["operation", "status_class"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bird_retries = Counter(
            "bridge_bird_retries",
            "Bird API calls retried, by the status class of the failed attempt",
            ["operation", "reason"],
            registry=r,
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
