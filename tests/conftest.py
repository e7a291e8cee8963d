"""Shared fixtures: the brokers the suite runs on, each started once per session.

``broker`` is Apache Kafka (one KRaft node, tests/kafka_cluster.py) wherever Java is
installed, and the embedded broker (Tansu) otherwise; ``kafka_cluster`` is three Apache
Kafka nodes, started only by the tests that ask for it; ``embedded_broker`` is Tansu, which
``bridge dev`` runs, and ``any_broker`` runs a test on both (the embedded smoke subset).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from bridge.kafka.embedded import EmbeddedBroker
from tests.kafka_cluster import (
    KAFKA_VERSION,
    Broker,
    KafkaCluster,
    KafkaUnavailable,
    kafka_classpath,
)
from tests.kafka_helpers import register_broker

# Set by .ci/run: a missing Java or a failed fetch fails the suite instead of falling back.
REQUIRE_KAFKA = os.environ.get("BRIDGE_TESTS_REQUIRE_KAFKA") == "1"

# BRIDGE_EVENT_LOOP=uvloop runs the in-process tests on uvloop too (the processes the tests
# start read it themselves): the whole suite on the loop, before it could be the default.
EVENT_LOOP = os.environ.get("BRIDGE_EVENT_LOOP", "asyncio")


if EVENT_LOOP == "uvloop":
    import uvloop

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        return {"uvloop": uvloop.new_event_loop}


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which broker the suite runs on (and why when it is not Apache Kafka), and when it is
    not asyncio's, the event loop."""
    lines = [_broker_header()]
    if EVENT_LOOP != "asyncio":
        lines.append(f"event loop: {EVENT_LOOP} (BRIDGE_EVENT_LOOP)")
    return lines


def _broker_header() -> str:
    try:
        kafka_classpath()
    except KafkaUnavailable as exc:
        if REQUIRE_KAFKA:
            raise pytest.UsageError(f"BRIDGE_TESTS_REQUIRE_KAFKA=1 but {exc}") from None
        return (
            f"broker: {exc}: running on the embedded broker (Tansu); "
            "tests that need Apache Kafka are skipped"
        )
    return f"broker: Apache Kafka {KAFKA_VERSION} (KRaft, tests/kafka/pom.xml)"


def _kafka_or_skip() -> str:
    try:
        return kafka_classpath()
    except KafkaUnavailable as exc:
        if REQUIRE_KAFKA:
            pytest.fail(f"BRIDGE_TESTS_REQUIRE_KAFKA=1 but {exc}")
        pytest.skip(f"needs Apache Kafka: {exc}")


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """A test that runs a command in-process (``bridge.cli.main``) configures logging the
    way the process does, with loggers cached on first use: later tests could then not
    capture those loggers' lines (``structlog.testing.capture_logs``). Each test gets back
    the configuration it started with."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Apache Kafka node (broker and controller in one JVM)."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), 1, classpath=_kafka_or_skip())
    cluster.start()
    register_broker(cluster)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes: replication factor 3, min.insync.replicas=2."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), 3, classpath=_kafka_or_skip())
    cluster.start()
    register_broker(cluster)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = Path(tmp_path_factory.mktemp("broker")) / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path)
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> Broker:
    """Apache Kafka when Java is here, else the embedded broker."""
    try:
        kafka_classpath()
    except KafkaUnavailable as exc:
        if REQUIRE_KAFKA:
            pytest.fail(f"BRIDGE_TESTS_REQUIRE_KAFKA=1 but {exc}")
        embedded: EmbeddedBroker = request.getfixturevalue("embedded_broker")
        return embedded
    cluster: KafkaCluster = request.getfixturevalue("kafka")
    return cluster


@pytest.fixture(params=["apache-kafka", "embedded"])
def any_broker(request: pytest.FixtureRequest) -> Broker:
    """The test runs once on Apache Kafka and once on the embedded broker of `bridge dev`."""
    name = "kafka" if request.param == "apache-kafka" else "embedded_broker"
    found: Broker = request.getfixturevalue(name)
    return found
