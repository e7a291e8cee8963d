"""JSON Schemas of every topic's value, and the AsyncAPI 3.0 document of the topics,
generated from the typed messages of bridge/messages.py: what the bridge reads and
writes, so the documents cannot drift from the code.

``python -m bridge.schemas`` writes docs/schemas/*.json and docs/asyncapi.yaml (PyYAML,
a dev dependency); ``python -m bridge.schemas --check`` says whether they are current.
tests/unit/test_schemas.py regenerates them and compares byte for byte.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from bridge import __version__
from bridge.commands.ledger_image import CHUNK_BYTES
from bridge.commands.ledger_snapshots import PARTITIONS as SNAPSHOT_PARTITIONS
from bridge.commands.ledger_snapshots import SNAPSHOTS_TOPIC_CONFIG
from bridge.config import DEFAULTS
from bridge.messages import (
    ChannelEvent,
    ChannelState,
    CommandMessage,
    LedgerRecord,
    ResultEvent,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CLOUDEVENTS_JSON = "application/cloudevents+json"

# docs/schemas/<file>: the value of each topic that has a JSON value.
TOPIC_SCHEMAS: dict[str, tuple[str, Any]] = {
    "channel-event.json": ("bird.channel-events: a channel event", ChannelEvent),
    "command.json": ("bird.connector-commands: a connector command", CommandMessage),
    "result.json": ("bird.connector-results: a command result", ResultEvent),
    "ledger-record.json": ("bird.connector-ledger: a ledger record", LedgerRecord),
    "channel-state.json": ("bird.channel-state: a channel's latest state", ChannelState),
}


def topic_schemas() -> dict[str, dict[str, Any]]:
    """Standalone JSON Schemas (2020-12), by file name."""
    schemas = {}
    for name, (title, type_) in TOPIC_SCHEMAS.items():
        generated = msgspec.json.schema(type_)
        schemas[name] = {"$schema": JSON_SCHEMA_DIALECT, "title": title, **generated}
    return schemas


def _asyncapi_schema(schema: Any) -> Any:
    """msgspec writes OpenAPI's ``discriminator`` object; AsyncAPI's is the property name."""
    if isinstance(schema, dict):
        out = {key: _asyncapi_schema(value) for key, value in schema.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(schema, list):
        return [_asyncapi_schema(item) for item in schema]
    return schema


def _header(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **schema}


CONTENT_TYPE = _header("application/cloudevents+json", const=CLOUDEVENTS_JSON)
CORRELATION_ID = _header("The command id, or Bird's request id")
TRACEPARENT = _header(
    "The webhook's W3C traceparent, when it had a well-formed one (contract.md section 6)",
    pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
)
TRACESTATE = _header("The webhook's W3C tracestate, next to its traceparent")

DEAD_LETTER_HEADERS: dict[str, dict[str, Any]] = {
    "dlq-reason": _header("Why the record was refused, cut to 1000 characters"),
    "dlq-source-topic": _header("The topic the record was read from"),
    "dlq-source-partition": _header("Its partition (decimal)", pattern="^[0-9]+$"),
    "dlq-source-offset": _header("Its offset (decimal)", pattern="^[0-9]+$"),
    "correlation-id": _header("The commandId, when one could be read and none was there"),
    "dlq-value-omitted": _header(
        "The copy with the value would be over Kafka's record limit (or the broker "
        "refused it): why, with the size and the limit. The value is then empty"
    ),
    "dlq-original-size": _header(
        "With dlq-value-omitted: the original value's length in bytes", pattern="^[0-9]+$"
    ),
    "dlq-headers-omitted": _header(
        "The original headers alone did not fit: how many were left out", pattern="^[0-9]+$"
    ),
    "dlq-key-omitted": _header(
        "The original key alone did not fit (the dead letter has no key): its length in bytes",
        pattern="^[0-9]+$",
    ),
}


def _headers(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    headers: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        headers["required"] = required
    return headers


def _kafka_key(description: str, *, nullable: bool = False) -> dict[str, Any]:
    key: dict[str, Any] = {"type": ["string", "null"] if nullable else "string"}
    return {"kafka": {"key": {**key, "description": description}, "bindingVersion": "0.5.0"}}


def _ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bridge's topics, from the bridge's point of view."""
    _, components = msgspec.json.schema_components(
        [ChannelEvent, CommandMessage, ResultEvent, LedgerRecord, ChannelState],
        ref_template="#/components/schemas/{name}",
    )
    commands = msgspec.json.schema_components(
        [CommandMessage], ref_template="#/components/schemas/{name}"
    )[0][0]
    components["CommandMessage"] = {"title": "CommandMessage", **commands}
    topics = {
        "channelEvents": ("BRIDGE_TOPIC_EVENTS", "channelEvent"),
        "connectorCommands": ("BRIDGE_TOPIC_COMMANDS", "command"),
        "connectorResults": ("BRIDGE_TOPIC_RESULTS", "result"),
        "deadLetters": ("BRIDGE_TOPIC_DEAD_LETTER", "deadLetter"),
        "connectorLedger": ("BRIDGE_TOPIC_LEDGER", "ledgerRecord"),
        "channelState": ("BRIDGE_TOPIC_CHANNEL_STATE", "channelState"),
        "connectorLedgerSnapshots": ("BRIDGE_TOPIC_LEDGER_SNAPSHOTS", "ledgerSnapshot"),
    }
    channels = {
        channel: {
            "address": DEFAULTS[variable],
            "description": f"The default name; {variable} changes it (configuration.md).",
            "messages": {message: _ref(f"#/components/messages/{message}")},
        }
        for channel, (variable, message) in topics.items()
    }
    # The one topic whose partitions do not follow BRIDGE_KAFKA_TOPIC_PARTITIONS.
    channels["connectorLedgerSnapshots"]["bindings"] = {
        "kafka": {
            "partitions": SNAPSHOT_PARTITIONS,
            "topicConfiguration": {
                "cleanup.policy": SNAPSHOTS_TOPIC_CONFIG["cleanup.policy"].split(","),
                "retention.ms": int(SNAPSHOTS_TOPIC_CONFIG["retention.ms"]),
            },
            "bindingVersion": "0.5.0",
        }
    }

    def operation(action: str, channel: str, summary: str) -> dict[str, Any]:
        message = topics[channel][1]
        return {
            "action": action,
            "summary": summary,
            "channel": _ref(f"#/channels/{channel}"),
            "messages": [_ref(f"#/channels/{channel}/messages/{message}")],
        }

    messages = {
        "channelEvent": {
            "name": "ChannelEvent",
            "title": "Channel event",
            "summary": "A Bird webhook as a CloudEvent, structured mode (contract.md section 2)",
            "contentType": CLOUDEVENTS_JSON,
            "headers": _headers(
                {
                    "content-type": CONTENT_TYPE,
                    "correlation-id": _header("Bird's request id, when the webhook had one"),
                    "traceparent": TRACEPARENT,
                    "tracestate": TRACESTATE,
                },
                ["content-type"],
            ),
            "payload": _ref("#/components/schemas/ChannelEvent"),
            "bindings": _kafka_key(
                "The channel id, else the workspace id; null without either", nullable=True
            ),
        },
        "channelState": {
            "name": "ChannelState",
            "title": "Channel state",
            "summary": "The latest known state of one channel, folded from the channel "
            "events; compacted, never moving backwards by updatedAt (contract.md section 10)",
            "contentType": CLOUDEVENTS_JSON,
            "headers": _headers({"content-type": CONTENT_TYPE}, ["content-type"]),
            "payload": _ref("#/components/schemas/ChannelState"),
            "bindings": _kafka_key("The channel id"),
        },
        "command": {
            "name": "ConnectorCommand",
            "title": "Connector command",
            "summary": "A command for Bird's Connectors API, tagged by action "
            "(contract.md section 3)",
            "description": "Ids are also refused when they contain '/', '?', '#' or control "
            "characters, are blank or are over 128 characters (bridge/commands/parse.py). "
            "A commandId that starts with a NUL character is refused too: the ledger's own "
            "keys start with one. "
            "Unknown top-level fields are ignored. A record that is not a command is "
            "dead-lettered.",
            "contentType": "application/json",
            "payload": _ref("#/components/schemas/CommandMessage"),
            "bindings": _kafka_key(
                "Any; order is kept per key, and the commandId is a good key", nullable=True
            ),
        },
        "result": {
            "name": "CommandResult",
            "title": "Command result",
            "summary": "A command's result as a CloudEvent, structured mode "
            "(contract.md section 4)",
            "contentType": CLOUDEVENTS_JSON,
            "correlationId": {"location": "$message.header#/correlation-id"},
            "headers": _headers(
                {"content-type": CONTENT_TYPE, "correlation-id": _header("The commandId")},
                ["content-type", "correlation-id"],
            ),
            "payload": _ref("#/components/schemas/ResultEvent"),
            "bindings": _kafka_key("The commandId"),
        },
        "deadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": "A command record that could not be handled (contract.md section 5)",
            "description": "The value is the original record's bytes, unchanged (empty when "
            "dlq-value-omitted is set), and the original headers are kept next to the "
            "dlq-* headers; so its value has no schema of its own.",
            "contentType": "application/octet-stream",
            "headers": {
                **_headers(
                    DEAD_LETTER_HEADERS,
                    [name for name in DEAD_LETTER_HEADERS if name.startswith("dlq-source-")]
                    + ["dlq-reason"],
                ),
                "additionalProperties": {
                    "type": "string",
                    "description": "The original record's headers",
                },
            },
            "payload": {"description": "The original record's value, byte for byte"},
            "bindings": _kafka_key(
                "The original key (null when dlq-key-omitted is set)", nullable=True
            ),
        },
        "ledgerRecord": {
            "name": "LedgerRecord",
            "title": "Ledger record",
            "summary": "The bridge's own state per command (an Extension; guarantees.md)",
            "description": "Compacted. Also holds barrier records (key \\u0000barrier, "
            "empty value), snapshot markers (key \\u0000snapshot/<generation>, empty value) "
            "and tombstones (null value), which readers skip. No headers.",
            "contentType": "application/json",
            "payload": _ref("#/components/schemas/LedgerRecord"),
            "bindings": _kafka_key("The commandId"),
        },
        "ledgerSnapshot": {
            "name": "LedgerSnapshot",
            "title": "Ledger snapshot",
            "summary": "A snapshot of the ledger's index, so a commands replica starts "
            "without reading the whole ledger (bridge-internal; guarantees.md)",
            "description": "Partition 0 holds the manifests (JSON, all under the key "
            "'manifest': the last one is the latest snapshot); partition 1 the chunks, the "
            f"raw bytes of the index's tables, at most {CHUNK_BYTES // 1024} KiB each, and "
            "tombstones (null value) of replaced snapshots. A manifest is written after its "
            "chunks and names them. Only the bridge reads them. No headers.",
            "contentType": "application/octet-stream",
            "payload": {"description": "A manifest (JSON) or a chunk (bytes)"},
            "bindings": _kafka_key("'manifest' (partition 0), or '<generation>/<n>' (partition 1)"),
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Channel Bridge",
            "version": __version__,
            "description": "The Kafka topics of the bridge between Bird's channel platform "
            "and Kafka. Generated by `python -m bridge.schemas` from bridge/messages.py; "
            "the contract is docs/contract.md.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CLOUDEVENTS_JSON,
        "channels": channels,
        "operations": {
            "publishChannelEvents": operation(
                "send", "channelEvents", "Publish each verified Bird webhook"
            ),
            "receiveCommands": operation("receive", "connectorCommands", "Read connector commands"),
            "publishResults": operation("send", "connectorResults", "Publish results"),
            "publishDeadLetters": operation(
                "send", "deadLetters", "Dead-letter records that are not commands"
            ),
            "writeLedger": operation("send", "connectorLedger", "Record a command's state"),
            "writeChannelState": operation(
                "send", "channelState", "Fold each channel event into its channel's state"
            ),
            "readLedger": operation(
                "receive",
                "connectorLedger",
                "Read the ledger at start: after the latest snapshot's offsets, or in full",
            ),
            "writeLedgerSnapshots": operation(
                "send", "connectorLedgerSnapshots", "Write a snapshot of the ledger's index"
            ),
            "readLedgerSnapshots": operation(
                "receive", "connectorLedgerSnapshots", "Read the latest snapshot at start"
            ),
        },
        "components": {
            "messages": messages,
            "schemas": _asyncapi_schema(copy.deepcopy(components)),
        },
    }


def rendered(docs: Path) -> dict[Path, bytes]:
    """Every generated file's path under ``docs`` and its exact bytes."""
    import yaml  # type: ignore[import-untyped]  # dev dependency: only the generator needs it

    files = {
        docs / "schemas" / name: (json.dumps(schema, indent=2, ensure_ascii=False) + "\n").encode()
        for name, schema in topic_schemas().items()
    }
    text = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=88)
    header = "# Generated by `python -m bridge.schemas` from bridge/messages.py. Do not edit.\n"
    files[docs / "asyncapi.yaml"] = (header + text).encode()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.schemas", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs folder")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = [path for path, data in rendered(args.docs).items() if _read(path) != data]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python -m bridge.schemas", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered(args.docs)[path])
        print(f"wrote {path}")
    return 0


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


if __name__ == "__main__":
    raise SystemExit(main())
