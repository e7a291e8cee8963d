"""The metrics operators alert on, read from a running bridge's /metrics (both roles) while
commands flow through the real broker and the Bird simulator (docs/metrics.md)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from birdsim.server import SimulatorServer
from birdsim.settings import DEFAULT_WORKSPACE_ID
from bridge.app import WEBHOOK_PATH
from bridge.config import Role
from bridge.metrics import DEAD_LETTER_REASONS
from tests.bridge_helpers import RunningBridge, running_bridge
from tests.command_helpers import (
    CommandClient,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    simulator_json,
)
from tests.ingest_helpers import channel_event, delivery
from tests.kafka_cluster import Broker
from tests.kafka_helpers import bridge_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
BOTH: list[Role] = ["ingest", "commands"]

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One read of /metrics: every sample by name and labels, and the families' types."""

    samples: dict[tuple[str, Labels], float]
    types: dict[str, str]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        found = self.get(name, **labels)
        assert found is not None, f"{name}{labels} not on /metrics"
        return found

    def series(self, name: str) -> dict[Labels, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def by(self, name: str, label: str, **fixed: str) -> dict[str, float]:
        """``name``'s samples with ``fixed`` labels, by the value of ``label``."""
        found: dict[str, float] = {}
        for labels, value in self.series(name).items():
            d = dict(labels)
            if all(d.get(k) == v for k, v in fixed.items()) and label in d:
                found[d[label]] = value
        return found


async def scrape(session: aiohttp.ClientSession, url: str) -> Scrape:
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[tuple[str, Labels], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return Scrape(samples, types)


async def scrape_until(
    session: aiohttp.ClientSession,
    url: str,
    done: Callable[[Scrape], bool],
    *,
    timeout: float = 20.0,
    what: str = "",
) -> Scrape:
    last: Scrape | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await scrape(session, url)
                if done(last):
                    return last
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; last scrape: {last}") from None


@dataclass
class Stack:
    simulator: SimulatorServer
    app: RunningBridge
    client: CommandClient
    session: aiohttp.ClientSession

    async def metrics(self) -> Scrape:
        return await scrape(self.session, self.app.url)

    async def until(self, done: Callable[[Scrape], bool], what: str, timeout: float = 20) -> Scrape:
        return await scrape_until(self.session, self.app.url, done, timeout=timeout, what=what)


@asynccontextmanager
async def stack(
    broker: Broker, simulator: SimulatorServer, roles: Sequence[Role] = BOTH, **overrides: str
) -> AsyncIterator[Stack]:
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **{**command_env(simulator.url), **overrides})
        async with (
            running_bridge(config, roles) as app,
            command_client(config) as client,
            aiohttp.ClientSession() as session,
        ):
            yield Stack(simulator, app, client, session)
    finally:
        await simulator.stop()


def lag(scrape: Scrape) -> dict[str, float]:
    return scrape.by("bridge_commands_consumer_lag", "partition")


async def test_lag_oldest_unfinished_duration_and_ledger_while_commands_wait(
    any_broker: Broker,
) -> None:
    """One command at a time, each followed for over a second: the records behind it show as
    lag on their partition and as the age of the oldest unfinished command; once done, lag
    and age are 0, each command is in the duration histogram, the ledger holds them all.
    Also on the embedded broker, whose fetch high-water mark the lag is computed from."""
    simulator = fast_simulator(install_delay_s=0.6, activate_delay_s=0.6)
    async with stack(any_broker, simulator, BRIDGE_COMMANDS_MAX_IN_FLIGHT="1") as s:
        topic = s.client.config.topics.commands
        partitions = {str(p) for p in range(s.client.config.kafka.topic_partitions)}
        # Every assigned partition gets its series after the first fetch: nothing waits yet.
        await s.until(lambda m: set(lag(m)) == partitions, "a lag series per partition")
        assert set(lag(await s.metrics()).values()) == {0.0}
        assert (await s.metrics()).value("bridge_commands_oldest_unfinished_age_seconds") == 0

        commands = [create_command(f"lag {i}") for i in range(4)]
        sent_at = time.time()
        for command in commands:  # one partition, so they wait behind each other
            await s.client.producer.send_and_wait(
                topic, orjson.dumps(command), key=command["commandId"].encode(), partition=0
            )
        # Lag comes from the fetch's high-water mark, which can move a moment before the
        # fetched record reaches its lane (with no linger the four arrive in one fetch):
        # wait until both show.
        waiting = await s.until(
            lambda m: (
                lag(m).get("0", 0) >= 2
                and m.value("bridge_commands_oldest_unfinished_age_seconds") > 0
            ),
            "records waiting as lag, the first of them unfinished",
        )
        assert waiting.value("bridge_commands_consumer_lag", partition="0") <= 4
        assert all(v == 0 for p, v in lag(waiting).items() if p != "0")
        assert waiting.value("bridge_commands_in_flight") <= 1
        age = waiting.value("bridge_commands_oldest_unfinished_age_seconds")
        assert 0 < age <= time.time() - sent_at + 1

        # While the first create is followed, its age grows.
        later = await s.until(
            lambda m: m.value("bridge_commands_oldest_unfinished_age_seconds") > age + 0.3,
            "the oldest unfinished command to age",
        )
        assert later.value("bridge_commands_consumer_lag", partition="0") >= 1

        for command in commands:
            final = await s.client.final(command["commandId"], timeout=40)
            assert final["data"]["status"] == "succeeded"
        done = await s.until(
            lambda m: (
                lag(m).get("0") == 0
                and m.value("bridge_commands_oldest_unfinished_age_seconds") == 0
            ),
            "no lag once every command finished",
        )
        assert set(lag(done)) == partitions

        duration = "bridge_command_duration_seconds"
        labels = {"action": "create", "status": "succeeded"}
        assert done.value(f"{duration}_count", **labels) == 4
        # Each was followed for install + activate (1.2 s); the later ones waited too.
        assert done.value(f"{duration}_bucket", le="1.0", **labels) == 0
        assert done.value(f"{duration}_sum", **labels) >= 4 * 1.2 + 1.2 + 2.4
        assert done.value(f"{duration}_sum", **labels) <= 4 * (time.time() - sent_at)
        assert done.value("bridge_commands_total", action="create", outcome="succeeded") == 4
        assert done.value("bridge_ledger_entries") == 4

        missing = {"commandId": f"get-{uuid.uuid4()}", "action": "get", "connectorId": "nope"}
        assert (await s.client.run(missing))["data"]["status"] == "failed"
        listed = await s.client.run({"commandId": f"list-{uuid.uuid4()}", "action": "list"})
        assert listed["data"]["status"] == "succeeded"
        after = await s.until(
            lambda m: m.get(f"{duration}_count", action="list", status="succeeded") == 1,
            "the list in the duration histogram",
        )
        assert after.value(f"{duration}_count", action="get", status="failed") == 1
        assert after.value("bridge_ledger_entries") == 6


async def test_lag_series_follow_the_assignment(broker: Broker) -> None:
    """Two replicas in one group: each shows lag for its own partitions only, a revoked
    partition's series is gone, and the remaining replica shows them all again once the
    other leaves."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        config = bridge_config(broker.bootstrap, **command_env(simulator.url))
        everything = {str(p) for p in range(config.kafka.topic_partitions)}
        async with (
            running_bridge(config, ["commands"]) as first,
            aiohttp.ClientSession() as session,
        ):
            await scrape_until(
                session, first.url, lambda m: set(lag(m)) == everything, what="all partitions"
            )
            async with running_bridge(config, ["commands"]) as second:
                async with asyncio.timeout(60):
                    while True:
                        mine = set(lag(await scrape(session, first.url)))
                        theirs = set(lag(await scrape(session, second.url)))
                        # Each its own share, none twice: the first lost its revoked ones.
                        if mine and theirs and not mine & theirs and mine | theirs == everything:
                            break
                        await asyncio.sleep(0.1)
            await scrape_until(
                session,
                first.url,
                lambda m: set(lag(m)) == everything,
                timeout=60,
                what="every partition back on the remaining replica",
            )
    finally:
        await simulator.stop()


def _created(name: str, trailer: int) -> dict[str, Any]:
    """A channel.updated webhook whose Bird timestamp is ``trailer`` seconds before now."""
    stamp = datetime.now(UTC) - timedelta(seconds=trailer)
    return channel_event(updatedAt=stamp.isoformat().replace("+00:00", "Z"), name=name)


async def _post(session: aiohttp.ClientSession, url: str, raw: bytes, headers: Any) -> int:
    async with session.post(url + WEBHOOK_PATH, data=raw, headers=headers) as response:
        return response.status


async def test_bird_status_classes_retries_dead_letters_and_webhooks(broker: Broker) -> None:
    """Bird answers 429, 5xx and no answer (a timeout) once each (the simulator's script),
    then normally: each is counted by status class and retried with that class as reason.
    Bad records are dead letters by reason. Webhooks: event age per published event, answers
    by code. (A connection reset would not do for "no answer": aiohttp itself sends a request
    again once when a reused connection is closed on it.)"""
    async with stack(broker, fast_simulator(), BRIDGE_BIRD_REQUEST_TIMEOUT_S="0.5") as s:
        ws = f"/workspaces/{DEFAULT_WORKSPACE_ID}"
        rules = [
            {"method": "POST", "path": f"{ws}/connectors", "responses": [429]},
            {"method": "GET", "path": f"{ws}/connectors/*", "responses": [503]},
            {"method": "GET", "path": f"{ws}/channels/*", "responses": ["timeout"]},
        ]
        await simulator_json(s.simulator.url, "POST", "/_simulator/faults/script", rules)
        created = await s.client.run(create_command("faulty bird"))
        assert created["data"]["status"] == "succeeded"
        missing = {"commandId": f"get-{uuid.uuid4()}", "action": "get", "connectorId": "nope"}
        assert (await s.client.run(missing))["data"]["status"] == "failed"

        # Bad records: one dead letter each, by reason.
        topic = s.client.config.topics.commands
        producer = s.client.producer
        await producer.send_and_wait(topic, b"{nope", key=b"bad-1")
        await producer.send_and_wait(topic, b"[1, 2]", key=b"bad-2")
        await producer.send_and_wait(topic, None, key=b"bad-3")
        await producer.send_and_wait(topic, b'{"commandId": "bad-4", "action": "explode"}')

        # Webhooks: 30 s old, the same delivery again, Bird's clock ahead, no timestamp, forged.
        old_raw, old_headers = delivery(_created("old", 30))
        ahead_raw, ahead_headers = delivery(_created("ahead", -3600))
        event = channel_event()
        del event["payload"]["updatedAt"], event["payload"]["createdAt"]
        bare_raw, bare_headers = delivery(event)
        forged_raw, forged_headers = delivery(channel_event(), key="not-the-key")
        answers = [
            await _post(s.session, s.app.url, old_raw, old_headers),
            await _post(s.session, s.app.url, old_raw, old_headers),
            await _post(s.session, s.app.url, ahead_raw, ahead_headers),
            await _post(s.session, s.app.url, bare_raw, bare_headers),
            await _post(s.session, s.app.url, forged_raw, forged_headers),
        ]
        assert answers == [204, 204, 204, 204, 401]

        m = await s.until(
            lambda m: sum(m.by("bridge_dead_letters_total", "reason").values()) == 4,
            "four dead letters",
        )

    requests = "bridge_bird_request_seconds_count"
    assert m.by(requests, "status_class", operation="create_connector") == {"429": 1, "2xx": 1}
    get_connector = m.by(requests, "status_class", operation="get_connector")
    assert get_connector["5xx"] == 1
    assert get_connector["4xx"] == 1  # the missing one: refused, not retried
    assert get_connector["2xx"] >= 1
    get_channel = m.by(requests, "status_class", operation="get_channel")
    assert get_channel["error"] == 1
    assert get_channel["2xx"] >= 1
    assert set(m.by(requests, "operation")) <= {
        "create_connector",
        "get_connector",
        "get_channel",
    }
    classes = {dict(k)["status_class"] for k in m.series(requests)}
    assert classes == {"2xx", "4xx", "429", "5xx", "error"}
    retries = {
        (dict(k)["operation"], dict(k)["reason"]): v
        for k, v in m.series("bridge_bird_retries_total").items()
    }
    assert retries == {
        ("create_connector", "429"): 1,
        ("get_connector", "5xx"): 1,
        ("get_channel", "error"): 1,
    }

    dead = m.by("bridge_dead_letters_total", "reason")
    assert set(dead) == set(DEAD_LETTER_REASONS)
    assert {r: v for r, v in dead.items() if v} == {
        "not_json": 1,
        "not_an_object": 1,
        "no_value": 1,
        "invalid_command": 1,
    }

    age = "bridge_webhook_event_age_seconds"
    assert m.value(f"{age}_count") == 2  # published events with a Bird timestamp
    assert m.value(f"{age}_bucket", le="0.1") == 1  # Bird's clock ahead: 0
    assert m.value(f"{age}_bucket", le="30.0") == 1
    assert m.value(f"{age}_bucket", le="60.0") == 2
    assert 30 <= m.value(f"{age}_sum") < 40
    assert m.by("bridge_webhook_responses_total", "code") == {"204": 4, "401": 1}
    assert m.by("bridge_webhook_requests_total", "outcome") == {
        "published": 3,
        "duplicate": 1,
        "bad_signature": 1,
    }
    assert m.value("bridge_ready", role="all") == 1


# --- docs/metrics.md is the table of what /metrics shows ------------------------------------


@dataclass(frozen=True)
class Documented:
    name: str  # as scraped: counters with _total, histograms by their base name
    kind: str
    roles: str


def documented_metrics() -> list[Documented]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `(bridge_[a-z_]+)` \| ([a-z]+) \|.*\| ([^|]+) \|$", text, re.M)
    return [Documented(name, kind, roles.strip()) for name, kind, roles in rows]


def scraped_name(family: str, kind: str) -> str:
    return family + "_total" if kind == "counter" else family


def test_the_table_is_well_formed() -> None:
    rows = documented_metrics()
    names = [r.name for r in rows]
    assert len(rows) >= 25
    assert len(set(names)) == len(names)
    for row in rows:
        assert row.kind in ("counter", "gauge", "histogram"), row
        assert row.name.endswith("_total") == (row.kind == "counter"), row
        assert row.roles.split()[0] in ("both", "ingest", "commands"), row


@pytest.mark.parametrize(
    "roles", [["ingest"], ["commands"], BOTH], ids=["ingest", "commands", "all"]
)
async def test_the_table_and_metrics_agree(broker: Broker, roles: list[Role]) -> None:
    """Every metric of docs/metrics.md is on a running bridge's /metrics, with the documented
    type, and every bridge_* metric there is in the table: the table cannot go stale."""
    table = {row.name: row for row in documented_metrics()}
    async with stack(broker, fast_simulator(), roles) as s:
        m = await s.metrics()
    shown: dict[str, str] = {}
    for family, kind in m.types.items():
        base = family.removesuffix("_created")
        if family != base and m.types.get(base) in ("counter", "histogram"):
            continue  # prometheus_client's creation time of a counter or histogram
        shown[scraped_name(family, kind)] = kind
    assert all(name.startswith("bridge_") for name in shown)
    assert sorted(set(table) - set(shown)) == []  # documented, not on /metrics
    assert sorted(set(shown) - set(table)) == []  # on /metrics, not documented
    assert {name: row.kind for name, row in table.items()} == shown
    role = "all" if len(roles) == 2 else roles[0]
    assert m.by("bridge_ready", "role") == {role: 1.0}
