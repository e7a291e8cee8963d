"""The simulator's records and their Bird JSON renderings (pure; no I/O).

Connector: bird-api.md 2.2; channel: 3; subscription: 4.2; delivery logs: 4.8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from birdsim.catalog import Template
from birdsim.validation import EventFilter

InstallOutcome = Literal["active", "inactive", "stuck"]
ExecutionStatus = Literal["pending", "retrying", "succeeded", "failed"]
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = ("pending", "retrying", "succeeded", "failed")

FAILED_INSTALL_REASON = "connector installation failed"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, like ``2025-07-05T19:08:45.650Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Channel:
    id: str
    workspace_id: str
    connector_id: str
    platform_id: str
    name: str
    identifier: str
    status: str
    capabilities: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    seq: int
    status_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "platformId": self.platform_id,
            "name": self.name,
            "connectorId": self.connector_id,
            "identifier": self.identifier,
            "status": self.status,
        }
        if self.status_reason is not None:
            body["statusReason"] = self.status_reason
        body["capabilities"] = self.capabilities
        body["createdAt"] = format_time(self.created_at)
        body["updatedAt"] = format_time(self.updated_at)
        return body


@dataclass
class Connector:
    id: str
    workspace_id: str
    name: str
    template: Template
    arguments: dict[str, Any] | None
    security_arguments: dict[str, Any] | None
    conversational: bool | None
    region: str
    identifier: str
    outcome: InstallOutcome
    created_at: datetime
    updated_at: datetime
    seq: int
    channel: Channel | None = None

    def to_json(self) -> dict[str, Any]:
        # No status field and no `channel` key until the channel exists (bird-api.md 2, Notes).
        # securityArguments are credentials: accepted, never echoed.
        body: dict[str, Any] = {
            "id": self.id,
            "workspaceId": self.workspace_id,
            "name": self.name,
            "region": self.region,
            "description": "",
            "arguments": self.arguments,
        }
        if self.channel is not None:
            body["channel"] = {"channelId": self.channel.id, "platform": self.template.platform}
        if self.template.platform == "sms" and self.arguments:
            body["number"] = {
                "numberId": self.arguments.get("phoneNumberId"),
                "phoneNumber": self.identifier,
                "capabilities": "sms-inbound,sms-outbound",
                "numberType": "mobile",
                "country": "NL",
            }
        body["connectorTemplateSlug"] = self.template.slug
        body["connectorTemplateRef"] = self.template.ref
        body["createdAt"] = format_time(self.created_at)
        body["updatedAt"] = format_time(self.updated_at)
        return body


@dataclass
class Subscription:
    id: str
    organization_id: str
    workspace_id: str
    service: str
    event: str
    url: str
    event_filters: tuple[EventFilter, ...] | None
    template: str | None
    signing_key: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    seq: int
    status_reason: str | None = None

    def filter_signature(self) -> tuple[str, str, frozenset[tuple[str, str]]]:
        """What bird-api.md 4.1 calls "the same filter combination"."""
        pairs = frozenset((f.key, f.value) for f in self.event_filters or ())
        return (self.service, self.event, pairs)

    def matches(self, service: str, event: str, attributes: dict[str, str]) -> bool:
        """Active, same service and event, and every filter (AND-ed, bird-api.md 4.1) holds."""
        if self.status != "active" or self.service != service or self.event != event:
            return False
        return all(attributes.get(f.key) == f.value for f in self.event_filters or ())

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "organizationId": self.organization_id,
            "workspaceId": self.workspace_id,
            "service": self.service,
            "event": self.event,
        }
        if self.event_filters is not None:
            body["eventFilters"] = [{"key": f.key, "value": f.value} for f in self.event_filters]
        if self.template is not None:
            body["template"] = self.template
        body["url"] = self.url
        # The docs' examples echo signingKey (bird-api.md 4.2).
        if self.signing_key is not None:
            body["signingKey"] = self.signing_key
        body["status"] = self.status
        if self.status_reason is not None:
            body["statusReason"] = self.status_reason
        body["createdAt"] = format_time(self.created_at)
        body["updatedAt"] = format_time(self.updated_at)
        return body


@dataclass(frozen=True)
class ChannelEvent:
    """A ``channels`` service event to deliver (bird-api.md 4.5/4.6)."""

    workspace_id: str
    event: str
    payload: dict[str, Any]

    @property
    def attributes(self) -> dict[str, str]:
        """The values the event filters of 4.6 look at."""
        return {
            "platformId": str(self.payload["platformId"]),
            "channelStatus": str(self.payload["status"]),
            "channelId": str(self.payload["id"]),
        }

    def envelope(self) -> dict[str, Any]:
        return {"service": "channels", "event": self.event, "payload": self.payload}


@dataclass
class Attempt:
    number: int
    at: datetime
    duration_ms: float
    http_status: int | None
    error: str | None = None
    response_body: str = ""

    @property
    def succeeded(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


@dataclass
class Delivery:
    """One event sent to one subscription, with every attempt (bird-api.md 4.7/4.8)."""

    request_id: str
    subscription_id: str
    workspace_id: str
    event: str
    url: str
    timestamp: str
    body: bytes
    signed: bool
    created_at: datetime
    seq: int
    attempts: list[Attempt] = field(default_factory=list)
    execution_status: ExecutionStatus = "pending"
    next_attempt_at: datetime | None = None

    def log_json(self) -> dict[str, Any]:
        """A logs list item (bird-api.md 4.8); ``httpStatusCode`` is 0 after a network error."""
        last = self.attempts[-1] if self.attempts else None
        return {
            "requestId": self.request_id,
            "attemptCount": len(self.attempts),
            "httpStatusCode": (last.http_status or 0) if last else 0,
            "executionStatus": self.execution_status,
            "createdAt": format_time(self.created_at),
        }

    def attempt_json(self, attempt: Attempt) -> dict[str, Any]:
        """A logs/details record: one per attempt (field names are undocumented, 4.8)."""
        body: dict[str, Any] = {
            "requestId": self.request_id,
            "attempt": attempt.number,
            "httpStatusCode": attempt.http_status or 0,
            "executionStatus": "succeeded" if attempt.succeeded else "failed",
            "url": self.url,
            "requestBody": self.body.decode(),
            "responseBody": attempt.response_body,
            "durationMs": round(attempt.duration_ms, 1),
            "createdAt": format_time(attempt.at),
        }
        if attempt.error is not None:
            body["error"] = attempt.error
        return body

    def to_json(self) -> dict[str, Any]:
        """The control API's view: the log item plus what was sent."""
        return {
            **self.log_json(),
            "subscriptionId": self.subscription_id,
            "workspaceId": self.workspace_id,
            "event": self.event,
            "url": self.url,
            "timestamp": self.timestamp,
            "signed": self.signed,
            "nextAttemptAt": format_time(self.next_attempt_at) if self.next_attempt_at else None,
            "attempts": [self.attempt_json(a) for a in self.attempts],
        }
