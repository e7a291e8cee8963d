"""The command core: what to do with a command, given what the ledger knows. Pure.

``plan(command, entry)`` is the replay table of docs/guarantees.md, one branch per row:

    ledger entry                 plan
    none                         Create (create) / Execute (delete, get, list)
    final                        Replay: the stored final result again, byte for byte
    accepted (with connector)    Resume: the stored accepted result again, then follow
    started                      LookUp: look for the connector at Bird, else create
    other fingerprint            Refuse: commandId reused for a different command

``plan_invalid`` is the same for a record that failed validation but has a readable
commandId. Also here, as pure functions: matching a started create to Bird's connectors
(``find_started_create``) and reading what a poll of a create's channel means
(``settle``). The executor (executor.py) carries the plans out.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.commands.ledger_state import Entry
from bridge.commands.parse import Command
from bridge.commands.results import Status, error_body
from bridge.commands.status import classify_channel_status
from bridge.errors import InvalidCommand

# How far Bird's clock may be behind ours when matching a connector to a started create.
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Replay:
    """Publish the stored final result again; nothing is sent to Bird."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class Resume:
    """An accepted create: publish its stored ``accepted`` again, then follow it."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class LookUp:
    """A create that was started but never answered: look for its connector at Bird
    before posting again."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class Create:
    """A create never seen: ledger ``started``, then post it."""


@dataclass(frozen=True, slots=True)
class Execute:
    """A delete, get or list: call Bird, then ledger ``final`` and the result."""

    entry: Entry | None


@dataclass(frozen=True, slots=True)
class Refuse:
    """The commandId belongs to another command: no result (its result must not change)."""

    error: InvalidCommand


Plan = Replay | Resume | LookUp | Create | Execute | Refuse


def plan(command: Command, entry: Entry | None) -> Plan:
    """What to do with ``command``, given the ledger's entry for its commandId."""
    if entry is not None and entry.fingerprint != command.fingerprint:
        return Refuse(
            InvalidCommand(
                "commandId",
                "already used for a different command; use a new commandId",
                command.command_id,
                action=command.action,
            )
        )
    if entry is not None and entry.state == "final":
        return Replay(entry)
    if command.action != "create":
        return Execute(entry)
    if entry is None:
        return Create()
    if entry.state == "accepted" and entry.connector is not None:
        return Resume(entry)
    return LookUp(entry)


@dataclass(frozen=True, slots=True)
class RecordRefusal:
    """An invalid record never seen: ledger its ``failed`` result as final, publish it."""


@dataclass(frozen=True, slots=True)
class Ignore:
    """The commandId belongs to another command: the invalid record gets no result (only
    its dead letter)."""


InvalidPlan = Replay | RecordRefusal | Ignore


def plan_invalid(fingerprint: str, entry: Entry | None) -> InvalidPlan:
    """What to do with an invalid record whose commandId can be read: the same record seen
    again gets the same result again; a commandId in use by another command gets none."""
    if entry is None:
        return RecordRefusal()
    if entry.fingerprint != fingerprint:
        return Ignore()
    return Replay(entry)


# --- matching a started create to Bird's connectors ----------------------------------


def created_after(connector: Mapping[str, Any], since: datetime) -> bool:
    try:
        created = datetime.fromisoformat(str(connector.get("createdAt")))
    except ValueError:
        return True  # no usable timestamp: do not rule it out
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created >= since


def find_started_create(
    body: Mapping[str, Any],
    started_at: str,
    candidates: Iterable[dict[str, Any]],
    claimed: Container[str],
) -> tuple[dict[str, Any] | None, int]:
    """The connector a create started at ``started_at`` made, among Bird's ``candidates``:
    same name and arguments (Bird may leave the arguments out), created after the start
    minus ``CLOCK_SKEW``, and not ``claimed`` by another command; the oldest such one.
    Returns it (or None) and how many matched."""
    since = datetime.fromisoformat(started_at) - CLOCK_SKEW
    matches = [
        c
        for c in candidates
        if c.get("name") == body.get("name")
        and c.get("id") not in claimed
        and created_after(c, since)
        and (c.get("arguments") in (None, {}) or c.get("arguments") == body.get("arguments"))
    ]
    if not matches:
        return None, 0
    matches.sort(key=lambda c: str(c.get("createdAt", "")))
    return matches[0], len(matches)


# --- following a create ----------------------------------------------------------------


def channel_id_of(connector: Mapping[str, Any]) -> str | None:
    channel = connector.get("channel")
    if isinstance(channel, Mapping):
        channel_id = channel.get("channelId")
        if isinstance(channel_id, str) and channel_id:
            return channel_id
    return None


def slim(connector: Mapping[str, Any]) -> dict[str, Any]:
    """What following a create needs of its connector: the id and the channel's id."""
    kept: dict[str, Any] = {"id": connector.get("id")}
    channel_id = channel_id_of(connector)
    if channel_id is not None:
        kept["channel"] = {"channelId": channel_id}
    return kept


@dataclass(frozen=True, slots=True)
class Settled:
    """A create's final status and result fields; ``outcome`` labels the follow metric."""

    status: Status
    fields: dict[str, Any]
    outcome: str


def settle(connector: dict[str, Any], channel_id: str, channel: dict[str, Any]) -> Settled | None:
    """What a poll of a create's channel means: ``succeeded`` (active), ``failed`` (an
    explicit failure, with Bird's ``statusReason``), or None: keep following."""
    status = channel.get("status")
    verdict = classify_channel_status(status)
    if verdict == "succeeded":
        return Settled("succeeded", {"connector": connector, "channel": channel}, "succeeded")
    if verdict == "failed":
        reason = channel.get("statusReason")
        error = error_body(
            "channel_failed",
            f"channel {channel_id} ended in status {status!r}",
            details={"statusReason": reason} if reason else {},
        )
        fields = {"connector": connector, "channel": channel, "error": error}
        return Settled("failed", fields, "channel_failed")
    return None


def timed_out(
    connector_id: str, channel: Mapping[str, Any] | None, limit_s: float
) -> dict[str, Any]:
    """The ``error`` of a create whose channel did not become active in time."""
    seen = channel.get("status") if channel else "no channel yet"
    message = f"connector {connector_id} not active within {limit_s:g}s"
    return error_body("timeout", f"{message} (last status: {seen})", retryable=True)
