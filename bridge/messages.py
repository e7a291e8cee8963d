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
    accepted_result: msgspec.Raw = NULL
    final_result: msgspec.Raw = NULL


def raw_or_none(value: msgspec.Raw) -> bytes | None:
    data = bytes(value)
    return None if data in (b"", b"null") else data
