"""Channel state, reconciliation and dead-letter redrive (contract sections 10 and 11),
against the real broker and the Bird simulator."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from birdsim.server import SimulatorServer
from birdsim.settings import DEFAULT_WORKSPACE_ID
from bridge import cli
from bridge.bird.client import BirdClient
from bridge.config import Config
from bridge.ingest.normalize import normalize_event
from bridge.kafka.clients import all_topics, ensure_topics
from bridge.kafka.embedded import EmbeddedBroker
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from bridge.reconcile.runner import Reconciler, Summary, read_known
from bridge.state.fold import STATE_TYPE, Known
from tests.bridge_helpers import running_bridge
from tests.cloudevents_helpers import read_with_sdk
from tests.command_helpers import (
    bird_connectors,
    command_client,
    command_env,
    create_command,
    fast_simulator,
    simulator_json,
    sms_connector,
)
from tests.integration.test_commands_process import worker
from tests.kafka_helpers import bridge_config, broker_env, read_topic

pytestmark = pytest.mark.integration

WS = DEFAULT_WORKSPACE_ID
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def channel_event(cid: str, status: str, updated: str) -> tuple[bytes, bytes]:
    payload = {
        "id": cid,
        "platformId": "sms",
        "workspaceId": WS,
        "status": status,
        "createdAt": "2026-12-01T10:00:00.000Z",
        "updatedAt": updated,
    }
    body = {"service": "channels", "event": "channel.updated", "payload": payload}
    record = normalize_event(
        body,
        raw_body=orjson.dumps(body),
        request_id=f"req-{cid}-{updated}-{status}",
        default_workspace_id=WS,
        received_at=NOW,
        origin="webhook",
    )
    assert record.key is not None
    return record.key, record.value


async def produce(
    config: Config, topic: str, items: Sequence[tuple[bytes | None, bytes]], **kw: Any
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key, **kw)
    finally:
        await producer.stop()


async def wait_known(config: Config, want: dict[str, str], timeout: float = 30) -> dict[str, Known]:
    """Read the state topic until every channel in ``want`` has that updatedAt."""
    async with asyncio.timeout(timeout):
        while True:
            known = await read_known(config)
            if all(c in known and known[c].updated_at == u for c, u in want.items()):
                return known
            await asyncio.sleep(0.3)


def state_history(records: list[Any]) -> dict[str, list[str]]:
    history: dict[str, list[str]] = {}
    for record in records:
        event = read_with_sdk(record)
        assert event.get_type() == STATE_TYPE
        subject = event.get_subject()
        assert subject is not None
        assert record.key == subject.encode()
        data = orjson.loads(record.value)["data"]
        history.setdefault(subject, []).append(data["updatedAt"])
    return history


async def topic_configs(config: Config, topic: str) -> dict[str, str]:
    """The configs the broker reports for ``topic`` (those set at creation, at least)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = responses[0].resources[0][4]
    return {str(entry[0]): str(entry[1]) for entry in entries}


def t(second: int) -> str:
    return f"2026-12-01T10:00:{second:02d}.000Z"


# --- the state fold ----------------------------------------------------------------------


async def test_an_old_update_after_a_new_one_is_not_folded(broker: EmbeddedBroker) -> None:
    simulator = fast_simulator()
    await simulator.start()
    config = bridge_config(broker.bootstrap, **command_env(simulator.url))
    try:
        async with running_bridge(config, ["commands"]):
            items = [
                channel_event("c1", "active", t(2)),
                channel_event("c1", "pending", t(1)),  # older, arrives later
                channel_event("c1", "active", t(2)),  # the same state again
                channel_event("sentinel", "active", t(9)),
            ]
            # One partition: the sentinel is folded after everything before it.
            await produce(config, config.topics.events, items, partition=0)
            await wait_known(config, {"sentinel": t(9)})
            records = await read_topic(broker.bootstrap, config.topics.channel_state, expect=2)
            assert state_history(records) == {"c1": [t(2)], "sentinel": [t(9)]}
            assert {r.partition for r in records} == {0}
            known = await read_known(config)
            assert known["c1"] == Known(t(2), "active")
        configs = await topic_configs(config, config.topics.channel_state)
        assert configs["cleanup.policy"] == "compact"
        assert configs["retention.ms"] == "-1"  # no time retention
    finally:
        await simulator.stop()


async def test_the_fold_moves_between_two_commands_processes_without_going_back(
    broker: EmbeddedBroker,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    config = bridge_config(broker.bootstrap, **command_env(simulator.url))
    channels = [f"chan-{i}" for i in range(12)]
    try:
        async with running_bridge(config, ["commands"]) as first:
            await produce(
                config, config.topics.events, [channel_event(c, "pending", t(1)) for c in channels]
            )
            await wait_known(config, dict.fromkeys(channels, t(1)))
            async with running_bridge(config, ["commands"]) as second:
                # Both fold now: wait until the group split the partitions.
                async with asyncio.timeout(30):
                    while not (_owned(first) and _owned(second)):
                        await asyncio.sleep(0.2)
                assert not _owned(first) & _owned(second)
                updates = [channel_event(c, "active", t(3)) for c in channels]
                stale = [channel_event(c, "inactive", t(2)) for c in channels]
                await produce(config, config.topics.events, updates + stale)
                await wait_known(config, dict.fromkeys(channels, t(3)))
            # The second left: the first owns everything again and folds on.
            newest = [channel_event(c, "inactive", t(5)) for c in channels]
            await produce(config, config.topics.events, newest + stale)
            known = await wait_known(config, dict.fromkeys(channels, t(5)))
            assert {known[c].status for c in channels} == {"inactive"}
        records = await read_topic(
            broker.bootstrap, config.topics.channel_state, expect=3 * len(channels)
        )
        history = state_history(records)
        assert history == {c: [t(1), t(3), t(5)] for c in channels}
    finally:
        await simulator.stop()


def _owned(running: Any) -> set[int]:
    return set(running.bridge.recovery.folder.known)


# --- reconciliation ------------------------------------------------------------------------


@asynccontextmanager
async def reconciler(config: Config) -> AsyncIterator[Reconciler]:
    metrics = Metrics()
    publisher = Publisher(config.kafka, metrics)
    await publisher.start()
    await asyncio.wait_for(publisher.ready.wait(), 20)
    try:
        async with BirdClient(config.bird, metrics) as bird:
            yield Reconciler(config, bird, publisher, metrics)
    finally:
        await publisher.stop(timeout=5)


async def create_topics(config: Config) -> None:
    """The topics a deployment has (the one-shot tools never create them)."""
    await ensure_topics(config.kafka, all_topics(config.topics))


async def make_channels(simulator: SimulatorServer, count: int) -> list[dict[str, Any]]:
    for i in range(count):
        simulator.simulator.create_connector(WS, sms_connector(f"Reconcile {i}"))
    sim = simulator.simulator
    async with asyncio.timeout(20):
        while True:
            found = sim.state.list_channels(WS, statuses=[], platforms=[])
            if len(found) == count and all(c.status == "active" for c in found):
                break
            await asyncio.sleep(0.1)
    return [c.to_json() for c in sim.state.list_channels(WS, statuses=[], platforms=[])]


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def run_cli(env: dict[str, str], *argv: str) -> tuple[int, list[str]]:
    import contextlib
    import io

    out = io.StringIO()

    def call() -> int:
        with environment(env), contextlib.redirect_stdout(out):
            return cli.main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue().splitlines()


async def test_reconcile_pages_through_bird_heals_drift_and_then_has_nothing_to_do(
    broker: EmbeddedBroker,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    env = broker_env(broker.bootstrap, **command_env(simulator.url))
    config = bridge_config(broker.bootstrap, **env)
    try:
        channels = await make_channels(simulator, 5)  # no subscription: every webhook lost
        async with running_bridge(config, ["commands"]), reconciler(config) as rec:
            rec.page_limit = 2  # 5 channels: three pages
            summary = await rec.run([WS])
            assert summary.line() == "reconciled workspaces=1 channels=5 published=5"
            list_calls = [
                r
                for r in simulator.simulator.journal.query({})
                if r.path.endswith("/channels") and r.method == "GET"
            ]
            assert len(list_calls) == 3
            await wait_known(config, {c["id"]: c["updatedAt"] for c in channels})

            # Nothing to do: the one-shot command publishes nothing.
            code, lines = await run_cli(env, "reconcile")
            assert (code, lines[-1]) == (0, "reconciled workspaces=1 channels=5 published=0")

            # A status change whose webhook was lost.
            changed = channels[2]["id"]
            await asyncio.sleep(0.01)
            await simulator_json(
                simulator.url,
                "POST",
                f"/_simulator/channels/{changed}/status",
                {"status": "inactive"},
            )
            code, lines = await run_cli(env, "reconcile", "--workspace", WS)
            assert (code, lines[-1]) == (0, "reconciled workspaces=1 channels=5 published=1")
            metrics = rec.metrics.render().decode()
            assert f'bridge_reconcile_channels_seen_total{{workspace="{WS}"}} 5.0' in metrics
        events = await read_topic(broker.bootstrap, config.topics.events, expect=6)
        assert len(events) == 6
        types = []
        for record in events:
            event = read_with_sdk(record)
            body = orjson.loads(record.value)
            assert body["birdorigin"] == "reconcile"
            assert event.get_id() == f"reconcile:{body['subject']}:{body['data']['updatedAt']}"
            types.append((event.get_type(), body["subject"], body["data"]["status"]))
        assert sorted(types).count(("com.bird.channel.updated", changed, "inactive")) == 1
        assert sum(1 for ty, _, _ in types if ty == "com.bird.channel.created") == 5
    finally:
        await simulator.stop()


async def test_reconcile_during_a_bird_outage_publishes_nothing_and_says_so(
    broker: EmbeddedBroker,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    env = broker_env(
        broker.bootstrap, **{**command_env(simulator.url), "BRIDGE_COMMANDS_DEADLINE_S": "1"}
    )
    config = bridge_config(broker.bootstrap, **env)
    try:
        await create_topics(config)
        await make_channels(simulator, 3)
        # Bird fails after the first page: a partial list must not be published.
        await simulator_json(
            simulator.url,
            "POST",
            "/_simulator/faults/script",
            {
                "method": "GET",
                "path": f"/workspaces/{WS}/channels",
                "responses": [{"kind": "pass"}] + [{"status": 503}] * 50,
            },
        )
        async with reconciler(config) as rec:
            rec.page_limit = 1
            summary: Summary = await rec.run([WS])
        assert (summary.workspaces, summary.published) == (0, 0)
        assert WS in summary.failed
        assert "503" in summary.failed[WS]
        assert summary.line().startswith("reconciled workspaces=0 channels=0 published=0 failed=1")
        retries = rec.metrics.render().decode()
        assert 'bridge_bird_retries_total{operation="list_channels"' in retries
        assert await read_topic(broker.bootstrap, config.topics.events, expect=1, timeout=2) == []
    finally:
        await simulator.stop()


async def test_periodic_reconciliation_heals_a_lost_webhook_within_an_interval(
    broker: EmbeddedBroker,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    config = bridge_config(
        broker.bootstrap, **command_env(simulator.url), BRIDGE_RECONCILE_INTERVAL_S="1"
    )
    try:
        async with running_bridge(config, ["commands"]) as running:
            await simulator_json(simulator.url, "POST", "/_simulator/webhooks/loss", {"all": True})
            channels = await make_channels(simulator, 2)
            await wait_known(config, {c["id"]: c["updatedAt"] for c in channels}, timeout=20)
            metrics = running.bridge.metrics.render().decode()
            assert "bridge_reconcile_last_success_timestamp_seconds" in metrics
    finally:
        await simulator.stop()


# --- dead letters ------------------------------------------------------------------------


def dead_letter(config: Config, command: dict[str, Any], reason: str, **extra: str) -> Any:
    headers = [
        ("dlq-reason", reason.encode()),
        ("dlq-source-topic", config.topics.commands.encode()),
        ("dlq-source-partition", b"0"),
        ("dlq-source-offset", b"7"),
        *((k, v.encode()) for k, v in extra.items()),
    ]
    return str(command["commandId"]).encode(), orjson.dumps(command), headers


async def produce_letters(config: Config, letters: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value, headers in letters:
            await producer.send_and_wait(config.topics.dead_letter, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_redrive_while_the_bridge_is_down_with_filters_and_dry_run(
    broker: EmbeddedBroker,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    env = broker_env(broker.bootstrap, **command_env(simulator.url))
    config = bridge_config(broker.bootstrap, **env)
    try:
        await create_topics(config)
        good = [create_command(f"Redriven {i}") for i in range(3)]
        other = create_command("Other reason")
        letters = [dead_letter(config, c, "bird_unavailable: Bird answered 503") for c in good]
        letters.append(dead_letter(config, other, "invalid_command: name"))
        letters.append(
            dead_letter(config, create_command(), "bird_unavailable", **{"dlq-value-omitted": "x"})
        )
        await produce_letters(config, letters)

        code, lines = await run_cli(env, "dlq", "list", "--json", "--reason", "BIRD_UNAVAILABLE")
        listed = [orjson.loads(line) for line in lines]
        assert code == 0
        assert len(listed) == 4
        assert {item["sourceTopic"] for item in listed} == {config.topics.commands}
        assert {item["redriveCount"] for item in listed} == {0}

        code, lines = await run_cli(env, "dlq", "redrive", "--reason", "503", "--dry-run")
        assert (code, lines[-1]) == (0, "redriven=3 skipped=0")
        assert await read_topic(broker.bootstrap, config.topics.commands, expect=1, timeout=2) == []

        code, lines = await run_cli(env, "dlq", "redrive", "--reason", "bird_unavailable")
        assert (code, lines[-1]) == (0, "redriven=3 skipped=1")
        assert "dlq-value-omitted" in lines[0]
        waiting = await read_topic(broker.bootstrap, config.topics.commands, expect=3)
        assert sorted(r.value for r in waiting) == sorted(orjson.dumps(c) for c in good)
        for record in waiting:
            headers = dict(record.headers)
            assert headers["dlq-redrive-count"] == b"1"
            assert headers["dlq-redriven-from"].startswith(config.topics.dead_letter.encode())

        # The bridge comes up later: the redriven commands were waiting in the topic.
        async with running_bridge(config, ["commands"]), command_client(config) as client:
            for command in good:
                final = await client.final(str(command["commandId"]), timeout=30)
                assert final["data"]["status"] == "succeeded"
    finally:
        await simulator.stop()


async def test_redrive_of_a_finished_command_is_answered_from_the_ledger(
    broker: EmbeddedBroker,
) -> None:
    simulator = fast_simulator()
    await simulator.start()
    env = broker_env(broker.bootstrap, **command_env(simulator.url))
    config = bridge_config(broker.bootstrap, **env)
    try:
        async with running_bridge(config, ["commands"]), command_client(config) as client:
            command = create_command("Finished once")
            first = await client.run(command)
            await produce_letters(config, [dead_letter(config, command, "redrive me")])
            code, lines = await run_cli(env, "dlq", "redrive")
            assert (code, lines[-1]) == (0, "redriven=1 skipped=0")
            command_id = str(command["commandId"])
            async with asyncio.timeout(20):
                while len(client.results.raw.get(command_id, [])) < 3:
                    await asyncio.sleep(0.1)
            raw = client.results.raw[command_id]
            assert first == orjson.loads(raw[1])
            assert raw[2] == raw[1]  # the final result again, byte for byte
        assert len(await bird_connectors(simulator.url)) == 1  # Bird saw one create only
    finally:
        await simulator.stop()


async def test_a_redriven_record_cannot_loop(broker: EmbeddedBroker) -> None:
    simulator = fast_simulator()
    await simulator.start()
    env = broker_env(broker.bootstrap, **command_env(simulator.url))
    config = bridge_config(broker.bootstrap, **env)
    try:
        async with running_bridge(config, ["commands"]), command_client(config) as client:
            bad = {"commandId": "cmd-loop", "action": "create", "connector": {}}
            await client.run(bad)  # failed, invalid_command, and a dead letter
            await read_topic(broker.bootstrap, config.topics.dead_letter, expect=1)
            code, lines = await run_cli(env, "dlq", "redrive", "--max-redrives", "1")
            assert (code, lines[-1]) == (0, "redriven=1 skipped=0")
            second = await read_topic(broker.bootstrap, config.topics.dead_letter, expect=2)
            again = dict(second[-1].headers)
            assert again["dlq-redrive-count"] == b"1"  # kept by the bridge's dead letter
            assert (
                again["dlq-redriven-from"]
                == f"{config.topics.dead_letter}/{second[0].partition}/{second[0].offset}".encode()
            )
            code, lines = await run_cli(
                env, "dlq", "redrive", "--max-redrives", "1", "--reason", "", "--json"
            )
            reports = [orjson.loads(line) for line in lines[:-1]]
            skipped = [r for r in reports if r["action"] == "skipped"]
            assert len(skipped) == 1
            assert "already redriven 1 times" in skipped[0]["why"]
            assert skipped[0]["offset"] == second[-1].offset
            assert lines[-1] == "redriven=1 skipped=1"
    finally:
        await simulator.stop()


@pytest.mark.slow
async def test_the_fold_survives_a_killed_commands_process(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Two `bridge run --role commands` processes share the fold; one is SIGKILLed (no
    revocation): the other takes its partitions over and no state goes backwards."""
    simulator = fast_simulator()
    await simulator.start()
    env = broker_env(broker.bootstrap, **command_env(simulator.url))
    config = bridge_config(broker.bootstrap, **env)
    channels = [f"proc-{i}" for i in range(12)]
    stale = [channel_event(c, "inactive", t(2)) for c in channels]
    try:
        await create_topics(config)
        with worker(env, tmp_path / "a.log") as first:
            await produce(
                config, config.topics.events, [channel_event(c, "pending", t(1)) for c in channels]
            )
            await wait_known(config, dict.fromkeys(channels, t(1)))
            with worker(env, tmp_path / "b.log"):
                async with asyncio.timeout(30):
                    while "channel-state partitions assigned" not in _text(tmp_path / "b.log"):
                        await asyncio.sleep(0.2)
                updates = [channel_event(c, "active", t(3)) for c in channels]
                await produce(config, config.topics.events, updates + stale)
                await wait_known(config, dict.fromkeys(channels, t(3)))
                first.send_signal(signal.SIGKILL)
                first.wait()
                newest = [channel_event(c, "inactive", t(5)) for c in channels]
                await produce(config, config.topics.events, newest + stale)
                known = await wait_known(config, dict.fromkeys(channels, t(5)), timeout=60)
        assert {known[c].status for c in channels} == {"inactive"}
        records = await read_topic(broker.bootstrap, config.topics.channel_state, expect=36)
        for channel_id, history in state_history(records).items():
            assert history == sorted(history), (channel_id, history)  # never backwards
            assert t(2) not in history
            assert history[-1] == t(5)
    finally:
        await simulator.stop()


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
