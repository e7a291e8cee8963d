"""``bridge command``: send one connector command and follow its results (and, for a create,
its channel's events) until the final result. A tool for people; services use Kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.config import Config
from bridge.kafka.clients import common_settings, topic_partitions

FINAL = ("succeeded", "failed")


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


async def _all_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(100):
        found = await topic_partitions(consumer, topic)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} does not exist (is the bridge running?)")


async def send_and_follow(config: Config, command: dict[str, Any], *, timeout: float) -> int:
    """Produce ``command``; print its results and its channel's events; 0 on success."""
    settings = common_settings(config.kafka)
    producer = AIOKafkaProducer(**settings, acks="all")
    consumer = AIOKafkaConsumer(**settings, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    command_id = command["commandId"]
    try:
        partitions = await _all_partitions(consumer, config.topics.results)
        if command["action"] == "create":
            partitions += await _all_partitions(consumer, config.topics.events)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        await producer.send_and_wait(
            config.topics.commands, orjson.dumps(command), key=command_id.encode()
        )
        print(f"sent  {config.topics.commands}  {orjson.dumps(command).decode()}", flush=True)
        connector_id: str | None = None
        final: str | None = None
        # After a create's final result, keep watching a moment for its channel's events.
        linger_until: float | None = None
        events: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while linger_until is None or loop.time() < linger_until:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    for record in records:
                        event = orjson.loads(record.value)
                        data = event.get("data") or {}
                        if tp.topic == config.topics.results:
                            if event.get("subject") != command_id:
                                continue
                            print(f"result {event['type']}\n{_pretty(data)}", flush=True)
                            connector_id = (data.get("connector") or {}).get("id") or connector_id
                            if data.get("status") in FINAL:
                                final = data["status"]
                        else:
                            events.append(event)
                if connector_id:
                    for event in [e for e in events if _of(e, connector_id)]:
                        data = event["data"]
                        print(
                            f"event {event['type']} channel={event.get('subject')} "
                            f"status={data.get('status')}",
                            flush=True,
                        )
                    events = [e for e in events if not _of(e, connector_id)]
                if final is not None and linger_until is None:
                    linger_until = loop.time() + (2.0 if command["action"] == "create" else 0.0)
    except TimeoutError:
        print(f"no final result for {command_id} within {timeout:g}s", flush=True)
        return 1
    finally:
        await consumer.stop()
        await producer.stop()
    return 0 if final == "succeeded" else 1


def _of(event: Mapping[str, Any], connector_id: str) -> bool:
    data = event.get("data")
    return isinstance(data, Mapping) and data.get("connectorId") == connector_id


def _pretty(data: Mapping[str, Any]) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
