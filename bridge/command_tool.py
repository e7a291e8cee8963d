"""``bridge command``: send one connector command and follow its results (and, for a create,
its channel's events) until the final result. A tool for people; services use Kafka.

Only the answers to this send are printed: results of an earlier send of the same
commandId are read first and not shown, and one the bridge publishes again (a replay
from its ledger) is printed once, labelled as a replay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.config import Config
from bridge.errors import StartupError
from bridge.kafka.clients import common_settings, diagnose, topic_partitions, where
from bridge.kafka.scan import quiet_logger

FINAL = ("succeeded", "failed")
CATCH_UP_S = 10.0  # at most this long reading the results that were there before the send


def build_command(
    action: str,
    *,
    command_id: str | None = None,
    workspace_id: str | None = None,
    name: str | None = None,
    template: str | None = None,
    connector_id: str | None = None,
    arguments: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The command JSON (contract section 3); an SMS create gets demo arguments by default."""
    command: dict[str, Any] = {"commandId": command_id or f"cli-{uuid.uuid4()}", "action": action}
    if workspace_id:
        command["workspaceId"] = workspace_id
    if action == "create":
        template = template or "sms-messagebird:1"
        args = dict(arguments or {})
        if template == "sms-messagebird:1":
            # Derived from the commandId: the same command sent again is the same command
            # (answered again, not refused as a reused commandId).
            number_id = uuid.uuid5(uuid.NAMESPACE_URL, command["commandId"])
            args.setdefault("phoneNumberId", str(number_id))
            args.setdefault("channelMessageType", "transactional")
        command["connector"] = {
            "connectorTemplateRef": template,
            "name": name or "My SMS channel",
            "arguments": args,
        }
    elif action in ("delete", "get"):
        command["connectorId"] = connector_id
    elif template:
        command["templateRef"] = template
    return command


@dataclass
class Answers:
    """Which results of one commandId ``bridge command`` prints, and how (pure).

    A command sent again is answered from the bridge's ledger: the result it published
    before, byte for byte, so with the same CloudEvent ``id``. Results already in the
    topic before the send are only remembered; when one of them comes again, it is
    printed once, labelled as the replay. Each result id is printed once."""

    command_id: str
    earlier: set[str] = field(default_factory=set)
    printed: set[str] = field(default_factory=set)
    final: str | None = None
    connector_id: str | None = None

    def seen_before_send(self, event: Mapping[str, Any]) -> None:
        if event.get("subject") == self.command_id:
            self.earlier.add(str(event.get("id")))

    def lines(self, event: Mapping[str, Any]) -> list[str]:
        """What to print for a result read after the send."""
        if event.get("subject") != self.command_id:
            return []
        event_id = str(event.get("id"))
        data = event.get("data") or {}
        if data.get("status") in FINAL:
            self.final = data["status"]
        connector = data.get("connector") or {}
        self.connector_id = connector.get("id") or self.connector_id
        if event_id in self.printed:
            return []
        self.printed.add(event_id)
        label = f"result {event.get('type')}"
        if event_id in self.earlier:
            label += (
                f"  [replayed: the bridge answered from its ledger with the result it "
                f"published earlier for this commandId (id {event_id})]"
            )
        return [label, _pretty(data)]


async def _all_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = await topic_partitions(consumer, topic, wait_s=10.0)
    if found:
        return found
    raise StartupError(f"topic {topic} does not exist: is the bridge running?")


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], answers: Answers
) -> None:
    """Read ``partitions`` up to their end (the high watermark of a fetch, which is right
    also where a broker's "latest offset" answer is not), remembering this command's
    earlier results. Bounded: on a slow broker, what was read by then counts."""
    loop = asyncio.get_running_loop()
    until = loop.time() + CATCH_UP_S
    while loop.time() < until:
        batches = await consumer.getmany(*partitions, timeout_ms=200)
        for records in batches.values():
            for record in records:
                answers.seen_before_send(_event(record.value))
        ends = [consumer.highwater(tp) for tp in partitions]
        positions = [await consumer.position(tp) for tp in partitions]
        if not batches and all(
            end is not None and pos >= end for end, pos in zip(ends, positions, strict=True)
        ):
            return


async def send_and_follow(config: Config, command: dict[str, Any], *, timeout: float) -> int:
    """Produce ``command``; print its results and its channel's events; 0 on success."""
    producer = AIOKafkaProducer(**common_settings(config.kafka), acks="all")
    consumer = AIOKafkaConsumer(**common_settings(config.kafka), enable_auto_commit=False)
    try:
        # aiokafka logs each failed connection attempt; the one line below says it all.
        with quiet_logger("aiokafka"):
            await producer.start()
            await consumer.start()
    except KafkaError as exc:
        # Stopping clients that never started is harmless and closes their connections.
        await consumer.stop()
        await producer.stop()
        why = await diagnose(config.kafka)
        if why.reached and why.reason:  # a broker refused these credentials
            raise StartupError(f"cannot connect to {where(config.kafka)}: {why.reason}") from exc
        raise StartupError(
            f"cannot reach Kafka at {config.kafka.bootstrap_servers} "
            f"(BRIDGE_KAFKA_BOOTSTRAP_SERVERS): is `make run` running?"
        ) from exc
    command_id = command["commandId"]
    answers = Answers(command_id)
    try:
        results = await _all_partitions(consumer, config.topics.results)
        partitions = list(results)
        if command["action"] == "create":
            partitions += await _all_partitions(consumer, config.topics.events)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        await _read_to_end(consumer, results, answers)
        await producer.send_and_wait(
            config.topics.commands, orjson.dumps(command), key=command_id.encode()
        )
        print(f"sent  {config.topics.commands}  {orjson.dumps(command).decode()}", flush=True)
        # After a create's final result, keep watching a moment for its channel's events.
        linger_until: float | None = None
        events: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while linger_until is None or loop.time() < linger_until:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for record in records:
                        event = _event(record.value)
                        if tp.topic == config.topics.results:
                            for line in answers.lines(event):
                                print(line, flush=True)
                        else:
                            events.append(event)
                connector_id = answers.connector_id
                if connector_id:
                    for event in [e for e in events if _of(e, connector_id)]:
                        data = event["data"]
                        print(
                            f"event {event['type']} channel={event.get('subject')} "
                            f"status={data.get('status')}",
                            flush=True,
                        )
                    events = [e for e in events if not _of(e, connector_id)]
                if answers.final is not None and linger_until is None:
                    linger_until = loop.time() + (2.0 if command["action"] == "create" else 0.0)
    except TimeoutError:
        print(f"no final result for {command_id} within {timeout:g}s", flush=True)
        return 1
    finally:
        await consumer.stop()
        await producer.stop()
    return 0 if answers.final == "succeeded" else 1


def _event(value: bytes | None) -> dict[str, Any]:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _of(event: Mapping[str, Any], connector_id: str) -> bool:
    data = event.get("data")
    return isinstance(data, Mapping) and data.get("connectorId") == connector_id


def _pretty(data: Mapping[str, Any]) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
