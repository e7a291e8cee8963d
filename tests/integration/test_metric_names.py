"""Every metric the chart's alert rules and dashboard use is on a running bridge's /metrics."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.bridge_helpers import running_bridge
from tests.command_helpers import command_client, command_env, create_command, fast_simulator
from tests.ingest_helpers import channel_event, delivery
from tests.k8s.monitoring import (
    PROMETHEUS_SERIES,
    dashboard,
    dashboard_exprs,
    exposed_names,
    metric_labels,
    monitoring_spec,
    rules,
    used_metric_names,
)
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration


async def scrape_running_bridge(broker: Broker) -> str:
    """/metrics of a bridge running both roles on the test broker, Bird simulated, once it
    has taken a webhook and run a command (so labelled series have samples too)."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        async with (
            running_bridge(config, ["ingest", "commands"]) as app,
            command_client(config) as client,
            aiohttp.ClientSession() as session,
        ):
            raw, headers = delivery(channel_event())
            async with session.post(app.url + "/webhooks/bird", data=raw, headers=headers) as sent:
                assert sent.status == 204
            created = await client.run(create_command())
            assert created["data"]["status"] == "succeeded"
            async with session.get(app.url + "/metrics") as response:
                assert response.status == 200
                return await response.text()
    finally:
        await simulator.stop()


async def test_rules_and_dashboard_use_only_metrics_the_bridge_exposes(broker: Broker) -> None:
    text = await scrape_running_bridge(broker)
    exposed = exposed_names((f.name, f.type) for f in text_string_to_metric_families(text))
    rule_names = used_metric_names(rule["expr"] for rule in rules(monitoring_spec()))
    dashboard_names = used_metric_names(dashboard_exprs(dashboard()))
    used = (rule_names | dashboard_names) - PROMETHEUS_SERIES
    assert "bridge_kafka_connected" in exposed  # the page was read and parsed
    assert 'bridge_commands_total{action="create",outcome="succeeded"} 1.0' in text
    assert len(used) > 20
    missing = sorted(used - exposed)
    assert missing == [], f"used by the rules or the dashboard, not on /metrics: {missing}"


async def test_labels_the_rules_and_dashboard_use_are_on_the_series(broker: Broker) -> None:
    """For each metric with samples after a webhook and a command: the labels the rules and
    the dashboard match or group it by are on its samples."""
    text = await scrape_running_bridge(broker)
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    exprs = [rule["expr"] for rule in rules(monitoring_spec())]
    exprs += dashboard_exprs(dashboard())
    used: set[tuple[str, str]] = set()
    for expr in exprs:
        used |= metric_labels(expr)
    checked = {(name, label) for name, label in used if name in labels}
    assert len(checked) >= 10, sorted(checked)
    missing = sorted((name, label) for name, label in checked if label not in labels[name])
    assert missing == [], f"labels not on the samples: {missing}"
