"""The executor carrying out each plan, against the recording fakes of tests/fakes.py:
what it asks Bird, what it writes to the ledger and what it publishes, per row of the
replay table (docs/guarantees.md). In memory, in milliseconds."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge import config as config_module
from bridge.commands.executor import Executor
from bridge.commands.ledger import Ledger
from bridge.commands.ledger_state import Entry
from bridge.commands.parse import Command, parse_command
from bridge.commands.runtime import KafkaResultSink
from bridge.errors import BirdOutcomeUnknown, BirdRejected, BirdUnavailable, InvalidCommand
from bridge.events import Record, rfc3339
from bridge.metrics import Metrics
from bridge.tracecontext import TraceContext
from bridge.tracing import Tracing
from tests.fakes import FakeBird, FakeLedger, RecordingPublisher, RecordingSink

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BODY = {"connectorTemplateRef": "sms-messagebird:1", "name": "Support", "arguments": {"a": "1"}}


class Harness:
    def __init__(
        self, bird: FakeBird | None = None, *, tracing: Tracing | None = None, **env: str
    ) -> None:
        settings = {
            "BRIDGE_BIRD_RETRY_BASE_S": "0.001",
            "BRIDGE_BIRD_RETRY_CAP_S": "0.002",
            "BRIDGE_COMMANDS_DEADLINE_S": "1",
            "BRIDGE_COMMANDS_FOLLOW_TIMEOUT_S": "0.2",
            "BRIDGE_COMMANDS_FOLLOW_INTERVAL_S": "0.01",
            **env,
        }
        self.config = config_module.load(settings)
        self.bird = bird or FakeBird(now=NOW)
        self.ledger = FakeLedger()
        self.sink = RecordingSink()
        self.executor = Executor(
            self.config,
            self.bird,
            self.ledger,
            self.sink,
            Metrics(),
            clock=lambda: NOW,
            tracing=tracing,
        )

    async def run(self, command: Command) -> str:
        return await self.executor.run(command)


def command(action: str = "create", command_id: str = "c-1", **fields: Any) -> Command:
    raw: dict[str, Any] = {"commandId": command_id, "action": action, **fields}
    if action == "create":
        raw.setdefault("connector", BODY)
    return parse_command(orjson.dumps(raw), default_workspace_id="ws")


# --- row "none": execute ----------------------------------------------------------------


async def test_a_new_create_is_posted_once_and_followed() -> None:
    h = Harness(FakeBird(now=NOW, channel_statuses=["pending", "pending", "active"]))
    assert await h.run(command()) == "succeeded"
    assert h.bird.operations() == ["create_connector"] + ["get_channel"] * 3
    assert h.ledger.states("c-1") == ["started", "accepted", "final"]
    assert h.sink.statuses() == ["accepted", "succeeded"]
    # The ledger holds the exact results published, each written before its result.
    assert h.ledger.writes[1].accepted_result == h.sink.published[0]
    assert h.ledger.writes[2].final_result == h.sink.published[1]
    assert h.sink.keys == ["c-1", "c-1"]


@pytest.mark.parametrize(
    ("raw", "operations", "data"),
    [
        ({"action": "list"}, ["list_connectors"], {"connectors": []}),
        (
            {"action": "delete", "connectorId": "k-9"},
            ["delete_connector"],
            {"connectorId": "k-9", "alreadyDeleted": True},
        ),
    ],
)
async def test_reads_and_deletes_are_called_once_and_recorded_final(
    raw: dict[str, Any], operations: list[str], data: dict[str, Any]
) -> None:
    h = Harness()
    action = raw.pop("action")
    assert await h.run(command(action, **raw)) == "succeeded"
    assert h.bird.operations() == operations
    assert h.ledger.states("c-1") == ["final"]
    assert h.sink.results()[0]["data"].items() >= data.items()


async def test_a_get_reads_the_connector_and_its_channel() -> None:
    h = Harness()
    made = h.bird.add_connector(BODY, created_at=NOW)
    assert await h.run(command("get", connectorId=made["id"])) == "succeeded"
    assert h.bird.calls == [("get_connector", made["id"]), ("get_channel", "ch-0")]
    assert h.sink.results()[0]["data"]["channel"]["id"] == "ch-0"


async def test_a_bird_refusal_is_a_final_failed_result() -> None:
    h = Harness()
    h.bird.failures["get_connector"].append(BirdRejected("nope", bird_status=403))
    assert await h.run(command("get", connectorId="k-1")) == "failed"
    error = h.sink.results()[0]["data"]["error"]
    assert (error["code"], error["httpStatus"], error["retryable"]) == (
        "bird_client_error",
        403,
        False,
    )


# --- row "final": replay ----------------------------------------------------------------


@pytest.mark.parametrize("action", ["create", "list"])
async def test_a_finished_command_is_answered_again_byte_for_byte(action: str) -> None:
    h = Harness()
    first = command(action)
    await h.run(first)
    calls, writes = list(h.bird.calls), len(h.ledger.writes)
    assert await h.run(first) == "replayed"
    assert h.sink.published[-1] == h.sink.published[-2]
    assert (h.bird.calls, len(h.ledger.writes)) == (calls, writes)  # Bird is not called


# --- row "accepted": resume -------------------------------------------------------------


async def test_an_accepted_create_republishes_accepted_and_follows() -> None:
    h = Harness()
    create = command()
    made = h.bird.add_connector(BODY, created_at=NOW)
    accepted_result = b'{"specversion":"1.0","subject":"c-1","data":{"status":"accepted"}}'
    entry = Entry("c-1", create.fingerprint, "create", "started", rfc3339(NOW))
    await h.ledger.write(entry.accepted(made, accepted_result))
    assert await h.run(create) == "succeeded"
    assert "create_connector" not in h.bird.operations()
    assert h.sink.published[0] == accepted_result
    assert h.sink.statuses() == ["accepted", "succeeded"]


async def test_an_accepted_create_without_its_accepted_result_is_followed() -> None:
    # Its connector was too large for a Kafka record: the ledger kept only what
    # following needs, and no accepted result was published.
    h = Harness()
    create = command()
    made = h.bird.add_connector(BODY, created_at=NOW)
    entry = Entry("c-1", create.fingerprint, "create", "started", rfc3339(NOW))
    await h.ledger.write(entry.accepted({"id": made["id"], "channel": made["channel"]}, None))
    assert await h.run(create) == "succeeded"
    assert h.sink.statuses() == ["succeeded"]
    assert h.bird.operations() == ["get_channel"]


async def test_a_connector_too_large_for_kafka_is_followed_from_its_id() -> None:
    h = Harness()
    h.sink.max_record_size = 1500
    big = {**BODY, "arguments": {"a": "x" * 2000}}
    assert await h.run(command(connector=big)) == "failed"
    accepted = h.ledger.writes[1]
    assert accepted.state == "accepted"
    assert accepted.accepted_result is None
    assert accepted.connector == {"id": "k-0", "channel": {"channelId": "ch-0"}}
    assert h.sink.statuses() == ["failed"]  # no accepted: it would not fit
    error = h.sink.results()[0]["data"]["error"]
    assert error["code"] == "result_too_large"
    assert error["details"]["connectorId"] == "k-0"
    assert error["details"]["resultStatus"] == "succeeded"


# --- row "started": look for it at Bird first -------------------------------------------


async def test_a_started_create_adopts_the_connector_bird_made() -> None:
    h = Harness()
    create = command()
    await h.ledger.write(Entry("c-1", create.fingerprint, "create", "started", rfc3339(NOW)))
    made = h.bird.add_connector(BODY, created_at=NOW + timedelta(seconds=2))
    assert await h.run(create) == "succeeded"
    assert h.bird.operations()[:1] == ["list_connectors"]
    assert "create_connector" not in h.bird.operations()
    assert h.sink.results()[-1]["data"]["connector"]["id"] == made["id"]


async def test_a_started_create_that_bird_never_made_is_posted() -> None:
    h = Harness()
    create = command()
    await h.ledger.write(Entry("c-1", create.fingerprint, "create", "started", rfc3339(NOW)))
    assert await h.run(create) == "succeeded"
    assert h.bird.operations()[:2] == ["list_connectors", "create_connector"]
    assert len(h.bird.connectors) == 1


async def test_a_lost_create_answer_is_looked_up_not_posted_again() -> None:
    h = Harness(FakeBird(now=NOW, lose_create_answers=1))
    assert await h.run(command()) == "succeeded"
    assert h.bird.operations()[:2] == ["create_connector", "list_connectors"]
    assert h.bird.operations().count("create_connector") == 1
    assert len(h.bird.connectors) == 1


async def test_an_outcome_unknown_create_bird_did_not_make_is_posted_again() -> None:
    h = Harness()
    h.bird.failures["create_connector"].append(BirdOutcomeUnknown("timed out"))
    assert await h.run(command()) == "succeeded"
    assert h.bird.operations()[:3] == ["create_connector", "list_connectors", "create_connector"]
    assert len(h.bird.connectors) == 1


async def test_bird_unavailable_through_the_deadline_fails_the_create_retryable() -> None:
    h = Harness()
    h.bird.failures["create_connector"].append(BirdUnavailable("cannot connect to Bird"))
    assert await h.run(command()) == "failed"
    assert h.ledger.states("c-1") == ["started", "final"]
    error = h.sink.results()[0]["data"]["error"]
    assert (error["code"], error["retryable"], error["httpStatus"]) == (
        "bird_unavailable",
        True,
        None,
    )


# --- row "other fingerprint": refuse ----------------------------------------------------


async def test_a_reused_commandid_is_refused_without_a_result() -> None:
    h = Harness()
    await h.run(command())
    published = list(h.sink.published)
    with pytest.raises(InvalidCommand) as refused:
        await h.run(command(connector={**BODY, "name": "Other"}))
    assert refused.value.field == "commandId"
    assert h.sink.published == published
    assert h.bird.operations().count("create_connector") == 1


# --- invalid records with a readable commandId ------------------------------------------


async def test_an_invalid_record_is_answered_once_and_the_same_again() -> None:
    h = Harness()
    value = b'{"commandId":"c-1","action":"update"}'
    problem = InvalidCommand("action", "must be one of create, delete, get, list", "c-1")
    await h.executor.reject(value, "unknown", problem)
    await h.executor.reject(value, "unknown", problem)
    assert len(h.sink.published) == 2
    assert h.sink.published[0] == h.sink.published[1]
    result = h.sink.results()[0]["data"]
    assert result["error"]["code"] == "invalid_command"
    assert result["error"]["details"] == {"field": "action"}
    fingerprint = "invalid:" + hashlib.sha256(value).hexdigest()
    assert [e.fingerprint for e in h.ledger.writes] == [fingerprint]
    # Another record under that commandId: no result (its dead letter says why).
    await h.executor.reject(b'{"commandId":"c-1"}', "unknown", problem)
    assert len(h.sink.published) == 2


async def test_an_invalid_records_result_that_is_gone_is_not_published() -> None:
    h = Harness()
    value = b'{"commandId":"c-1","action":"update"}'
    problem = InvalidCommand("action", "must be one of create, delete, get, list", "c-1")
    await h.executor.reject(value, "unknown", problem)
    h.ledger.records.clear()  # retention took it
    await h.executor.reject(value, "unknown", problem)
    assert len(h.sink.published) == 1


# --- following ends -----------------------------------------------------------------


async def test_a_channel_that_stays_pending_times_out_naming_its_status() -> None:
    h = Harness(FakeBird(now=NOW, channel_statuses=["pending"]))
    assert await h.run(command()) == "failed"
    error = h.sink.results()[-1]["data"]["error"]
    assert error["code"] == "timeout"
    assert "last status: pending" in error["message"]


async def test_a_failed_channel_ends_the_create() -> None:
    h = Harness(FakeBird(now=NOW, channel_statuses=["pending", "error"]))
    assert await h.run(command()) == "failed"
    assert h.sink.results()[-1]["data"]["error"]["code"] == "channel_failed"
    assert h.bird.operations().count("get_channel") == 2


async def test_a_bird_outage_while_following_is_waited_out() -> None:
    h = Harness()
    h.bird.failures["get_channel"].append(BirdUnavailable("Bird answered 503", bird_status=503))
    assert await h.run(command()) == "succeeded"
    assert h.bird.operations().count("get_channel") == 2


async def test_a_result_over_the_record_limit_is_replaced_by_result_too_large() -> None:
    h = Harness()
    h.sink.max_record_size = 600
    for number in range(10):
        h.bird.add_connector({**BODY, "name": f"n{number}"}, created_at=NOW)
    assert await h.run(command("list")) == "failed"
    error = h.sink.results()[0]["data"]["error"]
    assert error["code"] == "result_too_large"
    assert error["details"]["limit"] == 600
    assert "narrow the list with templateRef" in error["message"]


# --- the Kafka adapters, on a recording publisher ----------------------------------------


async def test_the_kafka_ledger_and_result_sink_publish_what_the_core_decided() -> None:
    config = config_module.load({})
    publisher = RecordingPublisher()
    ledger = Ledger(config, publisher)
    sink = KafkaResultSink(publisher, config.topics.results)
    bird = FakeBird(now=NOW)
    executor = Executor(config, bird, ledger, sink, Metrics(), clock=lambda: NOW)
    assert await executor.run(command("list")) == "succeeded"
    topics = [topic for topic, _, _ in publisher.sent]
    assert topics == [config.topics.ledger, config.topics.results]
    assert ledger.state.locate("c-1") == (0, 0)
    # The result is encoded once: the ledger holds the very bytes published.
    assert Entry.from_json(publisher.sent[0][1].value or b"").final_result == (
        publisher.sent[1][1].value
    )
    assert publisher.sent[1][1].key == b"c-1"


# --- trace context (contract 13): propagation only, no spans ------------------------------

TRACE = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "congo=t61")


async def test_every_bird_call_and_result_of_a_create_carries_the_commands_trace() -> None:
    h = Harness(FakeBird(now=NOW, channel_statuses=["pending", "active"]))
    assert await h.run(replace(command(), trace=TRACE)) == "succeeded"
    assert h.bird.operations() == ["create_connector", "get_channel", "get_channel"]
    assert h.bird.traces == [TRACE] * 3  # the follow-up polls included
    assert h.sink.traces == [TRACE, TRACE]  # accepted and succeeded
    # A replay from the ledger carries the trace of the record that asked again.
    again = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert await h.run(replace(command(), trace=again)) == "replayed"
    assert h.sink.traces[-1] == again


async def test_a_resumed_create_and_an_invalid_records_result_carry_the_trace() -> None:
    h = Harness()
    made = h.bird.add_connector(BODY, created_at=NOW)
    started = Entry("c-1", command().fingerprint, "create", "started", rfc3339(NOW))
    await h.ledger.write(started.accepted(made, None))
    assert await h.run(replace(command(), trace=TRACE)) == "succeeded"
    assert set(h.bird.traces) == {TRACE}
    problem = InvalidCommand("action", "must be one of create, delete, get, list", "c-2")
    await h.executor.reject(b'{"commandId":"c-2"}', "unknown", problem, trace=TRACE)
    assert h.sink.traces == [TRACE, TRACE]


async def test_a_command_without_trace_context_sends_none() -> None:
    h = Harness()
    assert await h.run(command("list")) == "succeeded"
    assert h.bird.traces == [None]
    assert h.sink.traces == [None]


async def test_the_result_record_carries_the_trace_headers() -> None:
    config = config_module.load({})
    publisher = RecordingPublisher()
    sink = KafkaResultSink(publisher, config.topics.results)
    executor = Executor(config, FakeBird(now=NOW), FakeLedger(), sink, Metrics(), clock=lambda: NOW)
    assert await executor.run(replace(command("list"), trace=TRACE)) == "succeeded"
    ((_, record, _),) = publisher.sent
    assert isinstance(record, Record)
    assert record.header("traceparent") == TRACE.traceparent.encode()
    assert record.header("tracestate") == b"congo=t61"
    assert record.header("correlation-id") == b"c-1"


async def test_with_spans_the_ledger_writes_and_results_are_spans_of_the_commands_trace() -> None:
    exporter = InMemorySpanExporter()
    h = Harness(tracing=Tracing.with_processor(SimpleSpanProcessor(exporter)))
    assert await h.run(replace(command(), trace=TRACE)) == "succeeded"
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans if s.context} == {int(TRACE.trace_id, 16)}
    # Every span is a child of the command's context (the worker's span in production).
    assert {s.parent.span_id for s in spans if s.parent} == {int(TRACE.parent_id, 16)}
    names = [s.name for s in spans]
    assert names.count("ledger write") == 3
    assert names.count(f"publish {h.config.topics.results}") == 2
    publishes = [s for s in spans if s.name.startswith("publish ")]
    # Each result names its own publish span as parent; Bird is called in the command's.
    assert [t.parent_id if t else None for t in h.sink.traces] == [
        f"{s.context.span_id:016x}" if s.context else None for s in publishes
    ]
    assert set(h.bird.traces) == {TRACE}
