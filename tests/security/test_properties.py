"""Property-based tests of the pure parts that see untrusted input: the signature
verifier, the webhook body parser and normalizer, and the command parser.

Each property says what must hold for *any* input: a refusal is always the documented
error (``BadSignature``, ``BadPayload``, ``InvalidCommand``), never another exception.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.commands.parse import ACTIONS, MAX_COMMAND_ID, Command, parse_command, read_command_id
from bridge.errors import BadPayload, BadSignature, InvalidCommand
from bridge.events import Record
from bridge.ingest.normalize import normalize_event, parse_body
from bridge.ingest.verify import compute_signature, sign, verify_signature

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DEFAULT_WORKSPACE = "ws-default"

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=4)

# Bird-shaped bodies: the known keys (with any values, often the right types) plus extras.
channel_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=40) | json_values,
        "channelId": st.text(max_size=40),
        "connectorId": st.text(max_size=40) | json_values,
        "workspaceId": st.text(max_size=40) | json_values,
        "platformId": st.sampled_from(["sms", "whatsapp", "email"]) | json_values,
        "platform": st.text(max_size=10),
        "status": st.sampled_from(["active", "pending", "inactive", "weird"]) | json_values,
        "identifier": st.text(max_size=20),
        "name": st.text(max_size=20) | json_values,
        "createdAt": st.text(max_size=30) | json_values,
        "updatedAt": st.text(max_size=30) | json_values,
    },
)
bird_bodies = st.fixed_dictionaries(
    {},
    optional={
        "service": st.sampled_from(["channels", "numbers"]) | json_values,
        "event": st.sampled_from(["channel.created", "channel.updated"]) | json_values,
        "payload": channel_like | json_values,
    },
).flatmap(lambda known: json_objects.map(lambda extra: {**extra, **known}))


def json_text(value: Any, ascii_only: bool) -> bytes:
    """JSON as any producer might write it (stdlib: big integers, escaped or raw unicode)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode()


body_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(json_text, json_values, st.booleans()),
    st.builds(json_text, bird_bodies, st.booleans()),
)


def from_header(raw: bytes) -> str:
    """A header value the way aiohttp hands it over: UTF-8 with undecodable bytes escaped."""
    return raw.decode("utf-8", "surrogateescape")


# Header-ish strings: arbitrary text, base64 of anything, and near-miss signatures.
header_text = st.one_of(
    st.text(max_size=150),
    st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
    st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
)
# As Bird sends it and as it arrives after the HTTP parser: no surrounding whitespace.
timestamps = st.text(max_size=64).filter(lambda t: t == t.strip())


def flip_bit(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- verify_signature -------------------------------------------------------------------


def outcome(**kwargs: Any) -> str:
    """``ok`` or ``refused``; any other exception escapes and fails the property."""
    refusal: BadSignature | None = None
    try:
        verify_signature(**kwargs)
    except BadSignature as exc:
        refusal = exc
    if refusal is None:
        return "ok"
    assert refusal.http_status == 401
    assert refusal.reason
    return "refused"


@PROPERTY
@given(
    signatures=st.lists(header_text, max_size=3),
    timestamps=st.lists(st.text(max_size=80), max_size=3),
    url=st.text(max_size=100),
    body=st.binary(max_size=200),
    keys=st.lists(st.text(max_size=40), max_size=3),
)
def test_any_headers_and_keys_give_a_verdict_never_another_error(
    signatures: list[str], timestamps: list[str], url: str, body: bytes, keys: list[str]
) -> None:
    verdict = outcome(signatures=signatures, timestamps=timestamps, url=url, body=body, keys=keys)
    if verdict == "ok":
        # Acceptance needs exactly one of each header and a real HMAC under one of the keys.
        assert len(signatures) == 1
        assert len(timestamps) == 1
        given_mac = base64.b64decode(signatures[0].strip())
        assert any(
            compute_signature(k, timestamps[0].strip(), url, body) == given_mac for k in keys
        )


@FEW
@given(
    signature=st.binary(max_size=60).map(from_header),
    timestamp=st.binary(max_size=20).map(from_header),
    body=st.binary(max_size=50),
)
def test_header_values_from_any_bytes_give_a_verdict(
    signature: str, timestamp: str, body: bytes
) -> None:
    verdict = outcome(
        signatures=[signature],
        timestamps=[timestamp],
        url="https://bridge.example.org/webhooks/bird",
        body=body,
        keys=["k"],
    )
    assert verdict == "refused"


@PROPERTY
@given(
    key=st.text(max_size=64),
    other_keys=st.lists(st.text(max_size=64), max_size=2),
    position=st.integers(min_value=0, max_value=2),
    timestamp=timestamps,
    url=st.text(max_size=200),
    body=st.binary(max_size=2000),
)
def test_a_correct_signature_always_verifies(
    key: str, other_keys: list[str], position: int, timestamp: str, url: str, body: bytes
) -> None:
    keys = list(other_keys)
    keys.insert(min(position, len(keys)), key)  # current or previous key, in any order
    signature = sign(key, timestamp, url, body)
    assert (
        outcome(signatures=[signature], timestamps=[timestamp], url=url, body=body, keys=keys)
        == "ok"
    )


@PROPERTY
@given(
    key=st.text(max_size=32),
    timestamp=timestamps,
    body=st.binary(min_size=1, max_size=500),
    data=st.data(),
)
def test_any_single_bit_change_to_the_body_fails(
    key: str, timestamp: str, body: bytes, data: st.DataObject
) -> None:
    url = "https://bridge.example.org/webhooks/bird"
    signature = sign(key, timestamp, url, body)
    bit = data.draw(st.integers(min_value=0, max_value=len(body) * 8 - 1), label="bit")
    tampered = flip_bit(body, bit)
    verdict = outcome(
        signatures=[signature], timestamps=[timestamp], url=url, body=tampered, keys=[key]
    )
    assert verdict == "refused"


@PROPERTY
@given(
    key=st.text(max_size=32),
    timestamp=timestamps,
    body=st.binary(max_size=300),
    bit=st.integers(min_value=0, max_value=32 * 8 - 1),
)
def test_any_single_bit_change_to_the_mac_fails(
    key: str, timestamp: str, body: bytes, bit: int
) -> None:
    url = "https://bridge.example.org/webhooks/bird"
    tampered = base64.b64encode(flip_bit(compute_signature(key, timestamp, url, body), bit))
    verdict = outcome(
        signatures=[tampered.decode()], timestamps=[timestamp], url=url, body=body, keys=[key]
    )
    assert verdict == "refused"


@PROPERTY
@given(
    key=st.text(max_size=32),
    timestamp=timestamps,
    body=st.binary(max_size=300),
    bit=st.integers(min_value=0, max_value=44 * 8 - 1),
)
def test_a_bit_change_to_the_header_verifies_only_if_it_decodes_to_the_same_mac(
    key: str, timestamp: str, body: bytes, bit: int
) -> None:
    """Base64 has slack: the last character before ``=`` carries two unused bits, so a few
    distinct header strings decode to the very same MAC. Anything else must fail."""
    url = "https://bridge.example.org/webhooks/bird"
    signature = sign(key, timestamp, url, body)
    assert len(signature) == 44
    tampered = flip_bit(signature.encode("ascii"), bit).decode("latin-1")
    verdict = outcome(signatures=[tampered], timestamps=[timestamp], url=url, body=body, keys=[key])
    if verdict == "ok":
        assert base64.b64decode(tampered.strip()) == compute_signature(key, timestamp, url, body)
        assert bit // 8 == 42  # the only position with slack


@PROPERTY
@given(
    key=st.text(max_size=32),
    timestamp=timestamps,
    url=st.text(max_size=60),
    body=st.binary(max_size=200),
    copies=st.integers(min_value=2, max_value=4),
    which=st.sampled_from(["signatures", "timestamps"]),
)
def test_a_repeated_header_is_refused_even_when_every_copy_is_valid(
    key: str, timestamp: str, url: str, body: bytes, copies: int, which: str
) -> None:
    signature = sign(key, timestamp, url, body)
    headers = {"signatures": [signature], "timestamps": [timestamp]}
    headers[which] = headers[which] * copies
    verdict = outcome(url=url, body=body, keys=[key], **headers)
    assert verdict == "refused"


# --- parse_body + normalize_event -------------------------------------------------------


def ingest(raw: bytes, request_id: str | None) -> Record:
    return normalize_event(
        parse_body(raw),
        raw_body=raw,
        request_id=request_id,
        default_workspace_id=DEFAULT_WORKSPACE,
        received_at=RECEIVED,
        origin="webhook",
    )


def check_event(raw: bytes, request_id: str | None, record: Record) -> None:
    body = orjson.loads(raw)
    event = orjson.loads(record.value)
    assert isinstance(event, dict)
    assert event["specversion"] == "1.0"
    assert isinstance(event["type"], str)
    assert event["type"].startswith("com.bird.")
    assert event["id"] == (request_id or hashlib.sha256(raw).hexdigest())
    assert isinstance(event["source"], str)
    assert event["source"].startswith("bird")
    assert isinstance(event["time"], str)
    assert event["time"]
    assert event["datacontenttype"] == "application/json"
    assert event["data"]["raw"] == body.get("payload", body)
    assert record.header("content-type") == b"application/cloudevents+json"
    subject = event.get("subject")
    if subject is not None:
        assert record.key == subject.encode()


@PROPERTY
@given(raw=body_bytes, request_id=st.none() | st.text(min_size=1, max_size=40))
def test_any_body_is_refused_with_bad_payload_or_becomes_a_cloud_event(
    raw: bytes, request_id: str | None
) -> None:
    try:
        record: Record | BadPayload = ingest(raw, request_id)
    except BadPayload as exc:
        record = exc
    if isinstance(record, BadPayload):
        assert record.http_status == 400
        assert record.reason
    else:
        check_event(raw, request_id, record)


@PROPERTY
@given(body=bird_bodies, ascii_only=st.booleans(), request_id=st.none() | st.text(min_size=1))
def test_any_json_object_is_published_never_refused(
    body: dict[str, Any], ascii_only: bool, request_id: str | None
) -> None:
    raw = json_text(body, ascii_only)
    record = ingest(raw, request_id)
    check_event(raw, request_id, record)


@FEW
@given(payload=channel_like, event=st.sampled_from(["channel.created", "channel.updated"]))
def test_channel_events_are_keyed_by_their_channel(payload: dict[str, Any], event: str) -> None:
    raw = orjson.dumps({"service": "channels", "event": event, "payload": payload})
    record = ingest(raw, "req-1")
    cloud = orjson.loads(record.value)
    assert cloud["type"] == f"com.bird.{event}"
    assert cloud["birdservice"] == "channels"
    channel_id = next((payload[k] for k in ("id", "channelId") if payload.get(k) is not None), None)
    if isinstance(channel_id, str) and channel_id:
        assert record.key == channel_id.encode()
        assert cloud["subject"] == channel_id
    else:
        assert "subject" not in cloud


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"a":' * depth + leaf + b"}" * depth


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        pytest.param(b"[" * 100_000, False, id="100k-open-brackets"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, False, id="100k-nested-arrays"),
        pytest.param(b'{"payload":' + nested(2000) + b"}", False, id="2000-deep-object"),
        pytest.param(b'{"payload":' + nested(100) + b"}", True, id="100-deep-payload"),
        pytest.param(b'{"payload":' + nested(240) + b"}", True, id="240-deep-payload"),
        # orjson reads 1024 levels but writes at most 254: the event could not be produced.
        pytest.param(b'{"payload":' + nested(300) + b"}", False, id="300-deep"),
        pytest.param(b'{"payload":' + nested(1000) + b"}", False, id="1000-deep"),
    ],
)
def test_deep_nesting_is_published_or_refused_with_bad_payload(raw: bytes, accepted: bool) -> None:
    if not accepted:
        with pytest.raises(BadPayload):
            ingest(raw, "req-deep")
        return
    try:
        record = ingest(raw, "req-deep")
    except BadPayload:
        return  # a clear refusal (400) is as good as publishing
    check_event(raw, "req-deep", record)


# --- parse_command ----------------------------------------------------------------------

identifiers = st.text(
    st.characters(exclude_characters="/?#", exclude_categories=("Cs", "Cc", "Cf", "Z")),
    min_size=1,
    max_size=128,
).filter(lambda s: s.isprintable() and s.strip() != "")
command_ids = st.text(min_size=1, max_size=MAX_COMMAND_ID)
non_blank = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
json_dicts = st.dictionaries(st.text(max_size=10), json_values, max_size=4)

connectors = st.fixed_dictionaries(
    {"connectorTemplateRef": non_blank, "name": non_blank},
    optional={
        "arguments": json_dicts | st.none(),
        "securityArguments": json_dicts | st.none(),
        "channelConversationalStatusEnabled": st.booleans() | st.none(),
        "invitationToken": st.text(max_size=20) | st.none(),
    },
)


@st.composite
def valid_commands(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(ACTIONS))
    command: dict[str, Any] = {"commandId": draw(command_ids), "action": action}
    if draw(st.booleans()):
        command["workspaceId"] = draw(identifiers)
    if action == "create":
        command["connector"] = draw(connectors)
    elif action in ("delete", "get"):
        command["connectorId"] = draw(identifiers)
    elif draw(st.booleans()):
        command["templateRef"] = draw(non_blank)
    # Unknown top-level fields (tracing metadata) are ignored.
    extra = draw(st.dictionaries(st.sampled_from(["traceId", "meta", "x"]), json_values))
    return {**extra, **command}


# Command-shaped objects whose every field may be right, wrong or missing.
command_like = st.fixed_dictionaries(
    {},
    optional={
        "commandId": command_ids | json_values | st.text(min_size=129, max_size=140),
        "action": st.sampled_from([*ACTIONS, "update", ""]) | json_values,
        "workspaceId": identifiers | json_values | st.sampled_from(["a/b", "x#", " ", "\n"]),
        "connectorId": identifiers | json_values | st.sampled_from(["a?b", "\x00"]),
        "templateRef": non_blank | json_values,
        "connector": connectors | json_values | json_dicts,
    },
)


def check_parse(value: bytes | None, default: str | None) -> Command | InvalidCommand:
    try:
        command: Command | InvalidCommand = parse_command(value, default_workspace_id=default)
    except InvalidCommand as exc:
        command = exc
    if isinstance(command, InvalidCommand):
        assert command.field
        assert command.reason.startswith(command.field)
        # A failed result goes to the producer exactly when its commandId can be read.
        assert command.command_id == read_command_id(value)
        return command
    assert command.command_id == read_command_id(value)
    assert command.action in ACTIONS
    assert command.workspace_id
    assert len(command.fingerprint) == 64
    return command


@PROPERTY
@given(value=st.none() | body_bytes, default=st.none() | st.just(DEFAULT_WORKSPACE))
def test_any_record_value_gives_a_command_or_invalid_command(
    value: bytes | None, default: str | None
) -> None:
    check_parse(value, default)


@PROPERTY
@given(raw=command_like, default=st.none() | st.just(DEFAULT_WORKSPACE))
def test_any_command_shaped_object_gives_a_command_or_names_the_field(
    raw: dict[str, Any], default: str | None
) -> None:
    check_parse(json_text(raw, ascii_only=False), default)


@PROPERTY
@given(raw=valid_commands(), default=st.none() | st.just(DEFAULT_WORKSPACE))
def test_valid_commands_round_trip(raw: dict[str, Any], default: str | None) -> None:
    value = orjson.dumps(raw)
    if "workspaceId" not in raw and default is None:
        with pytest.raises(InvalidCommand) as refused:
            parse_command(value, default_workspace_id=default)
        assert refused.value.field == "workspaceId"
        assert refused.value.command_id == raw["commandId"]
        return
    command = parse_command(value, default_workspace_id=default)
    assert command.command_id == raw["commandId"]
    assert command.action == raw["action"]
    assert command.workspace_id == raw.get("workspaceId", default)
    assert command.connector_id == raw.get("connectorId")
    assert command.template_ref == raw.get("templateRef")
    assert dict(command.connector) == raw.get("connector", {})
    # The fingerprint is the command's essence: not its id, key order or extra fields.
    reordered = dict(reversed(list(raw.items())))
    again = parse_command(
        orjson.dumps({**reordered, "commandId": "other", "traceId": "t"}),
        default_workspace_id=default,
    )
    assert again.fingerprint == command.fingerprint


def essence(command: Command) -> bytes:
    """What makes two commands the same request, as canonical JSON (``1`` is not ``1.0``)."""
    fields = (
        command.action,
        command.workspace_id,
        command.connector_id,
        command.template_ref,
        command.connector,
    )
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


@FEW
@given(a=valid_commands(), b=valid_commands())
def test_different_commands_have_different_fingerprints(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    first = parse_command(orjson.dumps(a), default_workspace_id=DEFAULT_WORKSPACE)
    second = parse_command(orjson.dumps(b), default_workspace_id=DEFAULT_WORKSPACE)
    same_essence = essence(first) == essence(second)
    assert (first.fingerprint == second.fingerprint) == same_essence


def create_with_arguments(arguments: bytes) -> bytes:
    return (
        b'{"commandId":"c-deep","action":"create","connector":'
        b'{"connectorTemplateRef":"sms-messagebird:1","name":"n","arguments":' + arguments + b"}}"
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param(b"[" * 100_000, "$", id="100k-open-brackets"),
        pytest.param(b"{" * 100_000, "$", id="100k-open-braces"),
        pytest.param(create_with_arguments(nested(2000)), "$", id="2000-deep-arguments"),
        pytest.param(create_with_arguments(nested(100)), None, id="100-deep-arguments"),
        pytest.param(
            b'{"commandId":"c","action":"list","trace":' + nested(900) + b"}",
            None,
            id="900-deep-ignored-field",
        ),
        pytest.param(
            create_with_arguments(nested(300)),
            "connector.arguments",
            id="300-deep-arguments",
        ),
        pytest.param(
            create_with_arguments(nested(1000)),
            "connector.arguments",
            id="1000-deep-arguments",
        ),
    ],
)
def test_deeply_nested_commands(value: bytes, field: str | None) -> None:
    result = check_parse(value, DEFAULT_WORKSPACE)
    if field is None:
        assert isinstance(result, Command)
    else:
        assert isinstance(result, InvalidCommand)
        assert result.field == field
