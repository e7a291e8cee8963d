"""The command side's messages at the Kafka boundary, as typed structs (msgspec). Pure.

A command record is a tagged union on ``action``: ``CreateMessage`` / ``DeleteMessage``
/ ``GetMessage`` / ``ListMessage`` (contract section 3). Unknown top-level fields are
ignored (room for tracing metadata); unknown fields of ``connector`` are refused, as
Bird refuses them: ``ConnectorBody`` is the bridge's one model of Bird's
``CreateConnectorReq`` (bird-api.md 2.1, ``additionalProperties: false``). The Bird
simulator keeps its own, independent model (birdsim/validation.py), so that
the two can disagree and the tests see it.

commands/parse.py turns these into a ``Command`` and msgspec's errors into
``InvalidCommand``s naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

MAX_COMMAND_ID = 128

CommandIdText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_COMMAND_ID)]
NonBlank = Annotated[str, msgspec.Meta(pattern=r"\S")]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class ConnectorBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Bird's ``CreateConnectorReq``; a field left out stays left out (``UNSET``), an
    explicit ``null`` is kept, so Bird gets what the producer sent."""

    connector_template_ref: NonBlank
    name: NonBlank
    arguments: dict[str, Any] | UnsetType | None = UNSET
    security_arguments: dict[str, Any] | UnsetType | None = UNSET
    channel_conversational_status_enabled: bool | UnsetType | None = UNSET
    invitation_token: str | UnsetType | None = UNSET

    def to_bird(self) -> dict[str, Any]:
        """The create body for Bird: the fields the producer set, as it set them."""
        names = zip(self.__struct_fields__, self.__struct_encode_fields__, strict=True)
        return {
            wire: getattr(self, name) for name, wire in names if getattr(self, name) is not UNSET
        }


CONNECTOR_FIELDS: tuple[str, ...] = ConnectorBody.__struct_encode_fields__


class Envelope(msgspec.Struct, rename="camel"):
    """What every command record has, read first: a refusal can then name the commandId."""

    command_id: CommandIdText


class _CommandMessage(msgspec.Struct, tag_field="action", kw_only=True, rename="camel"):
    command_id: CommandIdText
    # Identifiers: their other rules (no '/', '?', '#', control characters; at most 128
    # characters; not blank) are checked in parse.py, with the wording of contract 3.
    workspace_id: str | None = None


class CreateMessage(_CommandMessage, tag="create"):
    connector: ConnectorBody


class DeleteMessage(_CommandMessage, tag="delete"):
    connector_id: str | None = None


class GetMessage(_CommandMessage, tag="get"):
    connector_id: str | None = None


class ListMessage(_CommandMessage, tag="list"):
    template_ref: NonEmpty | None = None


CommandMessage = CreateMessage | DeleteMessage | GetMessage | ListMessage


# --- the ledger topic (bird.connector-ledger) --------------------------------------------

NULL = msgspec.Raw(b"null")


StoredResult = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        description="A result CloudEvent (the results topic's value) as published, or null"
    ),
]


class LedgerRecord(msgspec.Struct, rename="camel"):
    """One record of the ledger topic, as written and read. The results are kept as the
    exact bytes published (``msgspec.Raw``): read back, they are published again as they
    are, without being decoded and encoded again."""

    command_id: str
    fingerprint: str
    action: str
    state: Literal["started", "accepted", "final"]
    started_at: str
    connector_id: str | None = None
    connector: dict[str, Any] | None = None
    accepted_result: StoredResult = msgspec.field(default_factory=lambda: NULL)
    final_result: StoredResult = msgspec.field(default_factory=lambda: NULL)


def raw_or_none(value: msgspec.Raw) -> bytes | None:
    data = bytes(value)
    return None if data in (b"", b"null") else data


# --- the records the bridge writes: channel events and command results -----------------
#
# CloudEvents 1.0, structured JSON mode (contract sections 2 and 4). A field that is
# ``UNSET`` is left out of the record; ``None`` is written as ``null``; a field without a
# default is always written (so the schemas list it as required). bridge/events.py
# encodes these structs (``encode``) with orjson, field by field in declaration order:
# the order below is the order on the wire. bridge/schemas.py generates the JSON Schemas
# and docs/asyncapi.yaml from them.

SPEC_VERSION: Literal["1.0"] = "1.0"
DATA_CONTENT_TYPE: Literal["application/json"] = "application/json"

Origin = Literal["webhook", "reconcile"]
Status = Literal["accepted", "succeeded", "failed"]

BirdValue = Annotated[
    Any,
    msgspec.Meta(
        description="Bird's value, as Bird sent it (a string in Bird's payloads); left out "
        "when Bird sent none or null."
    ),
]
Timestamp = Annotated[
    str,
    msgspec.Meta(
        description="RFC 3339, with a zone offset",
        extra_json_schema={"format": "date-time"},
    ),
]


class ChannelEventData(msgspec.Struct, kw_only=True, rename="camel"):
    """The ``data`` of a channel event: the normalized fields that exist, then ``raw``."""

    channel_id: BirdValue | UnsetType = UNSET
    connector_id: BirdValue | UnsetType = UNSET
    workspace_id: BirdValue | UnsetType = UNSET
    platform: BirdValue | UnsetType = UNSET
    status: BirdValue | UnsetType = UNSET
    identifier: BirdValue | UnsetType = UNSET
    name: BirdValue | UnsetType = UNSET
    created_at: BirdValue | UnsetType = UNSET
    updated_at: BirdValue | UnsetType = UNSET
    raw: Annotated[
        Any,
        msgspec.Meta(
            description="The webhook's payload untouched, or the whole body when it has none"
        ),
    ]


class ChannelEvent(msgspec.Struct, kw_only=True):
    """A record of the channel-events topic (contract section 2)."""

    specversion: Literal["1.0"]
    id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="Bird's request id (messagebird-request-id), else the sha256 hex "
            "of the raw body",
        ),
    ]
    source: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^bird(:workspaces/.+)?$",
            description="bird:workspaces/<workspaceId, percent-encoded>, else bird",
        ),
    ]
    type: Annotated[str, msgspec.Meta(pattern=r"^com\.bird\.", description="com.bird.<event>")]
    subject: Annotated[str, msgspec.Meta(description="The channel id")] | UnsetType = UNSET
    time: Timestamp
    datacontenttype: Literal["application/json"]
    birdservice: (
        Annotated[str, msgspec.Meta(description="Bird's service (Extension)")] | UnsetType
    ) = UNSET
    birdorigin: Origin
    data: ChannelEventData


class ChannelState(msgspec.Struct, kw_only=True):
    """A record of the channel-state topic (contract section 10): the latest known state
    of one channel, keyed by its id; written by bridge/state/fold.py."""

    specversion: Literal["1.0"]
    id: Annotated[
        str,
        msgspec.Meta(
            min_length=1, description="state:<channelId>:<updatedAt, else the event id>:<status>"
        ),
    ]
    source: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^bird(:workspaces/.+)?$",
            description="The source of the channel event it was folded from",
        ),
    ]
    type: Literal["com.bird.channel.state"]
    subject: Annotated[str, msgspec.Meta(min_length=1, description="The channel id")]
    time: Timestamp
    datacontenttype: Literal["application/json"]
    birdorigin: Origin | UnsetType = UNSET
    data: ChannelEventData


class ResultError(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """A failed result's ``error`` (contract section 4)."""

    code: Annotated[
        str,
        msgspec.Meta(
            description="invalid_command, bird_client_error, bird_unavailable, timeout, "
            "channel_failed or result_too_large"
        ),
    ]
    message: str
    retryable: bool
    http_status: Annotated[int | None, msgspec.Meta(description="The status Bird answered")]
    details: dict[str, Any]


class ResultData(msgspec.Struct, kw_only=True, rename="camel"):
    """The ``data`` of a command result."""

    command_id: str
    action: str
    status: Status
    connector: dict[str, Any] | UnsetType = UNSET
    channel: dict[str, Any] | UnsetType = UNSET
    connectors: list[dict[str, Any]] | UnsetType = UNSET
    connector_id: (
        Annotated[str, msgspec.Meta(description="delete: the connector deleted")] | UnsetType
    ) = UNSET
    already_deleted: (
        Annotated[bool, msgspec.Meta(description="delete: it no longer existed")] | UnsetType
    ) = UNSET
    error: ResultError | None


class ResultEvent(msgspec.Struct, kw_only=True):
    """A record of the results topic (contract section 4)."""

    specversion: Literal["1.0"]
    id: str
    source: Literal["bird-bridge"]
    type: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^com\.bird\.bridge\.connector\..+\.(accepted|succeeded|failed)$",
            description="com.bird.bridge.connector.<action>.<status>",
        ),
    ]
    subject: Annotated[str, msgspec.Meta(description="The commandId")]
    time: Timestamp
    datacontenttype: Literal["application/json"]
    data: ResultData
