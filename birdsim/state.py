"""The simulator's in-memory world: workspaces, connectors, channels, subscriptions, deliveries.

Pure: no I/O, no clock of its own (``now`` and ``new_id`` are injected); methods raise ``ApiError``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from birdsim.catalog import TEMPLATES, capabilities_for
from birdsim.model import (
    FAILED_INSTALL_REASON,
    Attempt,
    Channel,
    ChannelEvent,
    Connector,
    Delivery,
    InstallOutcome,
    Subscription,
)
from birdsim.problems import ApiError, not_found
from birdsim.validation import ConnectorRequest, SubscriptionRequest

# bird-api.md 4.1: at most 5 subscriptions for the same filter combination.
MAX_SAME_SUBSCRIPTIONS = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def install_outcome(name: str, *, fail_all: bool, stuck_all: bool) -> InstallOutcome:
    """The failure triggers: ``[stuck]`` / ``[fail]`` in the name, or the global switches."""
    if "[stuck]" in name or stuck_all:
        return "stuck"
    if "[fail]" in name or fail_all:
        return "inactive"
    return "active"


def _digits(seed: str, count: int) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16))[-count:].zfill(count)


def make_identifier(platform: str, arguments: dict[str, Any] | None, connector_id: str) -> str:
    """The channel's address: a phone number from the arguments, or a generated stand-in."""
    args = arguments or {}
    if isinstance(args.get("phoneNumber"), str) and args["phoneNumber"]:
        return str(args["phoneNumber"])
    seed = str(args.get("phoneNumberId") or args.get("phoneId") or connector_id)
    if platform in ("sms", "whatsapp"):
        return "+316" + _digits(seed, 8)
    if platform == "email":
        return f"channel-{connector_id[:8]}@simulator.bird.test"
    if platform == "telegram":
        return f"@simulator_{connector_id[:8]}_bot"
    return f"simulator-{connector_id[:8]}"


def _duplicate_key(ref: str, arguments: dict[str, Any] | None) -> str | None:
    """Identity used by ``reject_duplicates``: the phone number id, else the whole arguments."""
    if not arguments:
        return None
    if arguments.get("phoneNumberId"):
        return f"{ref}|phone|{arguments['phoneNumberId']}"
    return f"{ref}|args|{json.dumps(arguments, sort_keys=True)}"


class SimulatorState:
    def __init__(
        self,
        *,
        organization_id: str,
        workspace_ids: Iterable[str],
        other_organizations: Iterable[tuple[str, Iterable[str]]] = (),
        region: str = "eu-west-1",
        reject_duplicates: bool = False,
        now: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_uuid,
    ) -> None:
        self.organization_id = organization_id
        self.region = region
        self.reject_duplicates = reject_duplicates
        self.now = now
        self.new_id = new_id
        self._seq = itertools.count(1)
        self.workspaces: list[str] = list(dict.fromkeys(workspace_ids))
        # workspace -> its organization
        self.owners: dict[str, str] = dict.fromkeys(self.workspaces, organization_id)
        for other, spaces in other_organizations:
            for ws in spaces:
                self.owners.setdefault(ws, other)
                if ws not in self.workspaces:
                    self.workspaces.append(ws)
        self.connectors: dict[str, Connector] = {}
        self.channels: dict[str, Channel] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: dict[str, Delivery] = {}

    # -- workspaces -------------------------------------------------------------------------

    def add_workspace(self, workspace_id: str, organization_id: str | None = None) -> None:
        if workspace_id in self.workspaces:
            raise ApiError(409, "WorkspaceAlreadyExists", "workspace already exists")
        self.workspaces.append(workspace_id)
        self.owners[workspace_id] = organization_id or self.organization_id

    def owner_of(self, workspace_id: str) -> str | None:
        """The organization a workspace belongs to (None: no such workspace)."""
        return self.owners.get(workspace_id)

    def require_workspace(self, workspace_id: str, organization_id: str | None = None) -> None:
        owner = self.owners.get(workspace_id)
        if organization_id is not None and organization_id not in self.owners.values():
            raise not_found("organization")
        if owner is None or (organization_id is not None and organization_id != owner):
            raise not_found("workspace")

    # -- connectors (bird-api.md 2) ---------------------------------------------------------

    def create_connector(
        self, workspace_id: str, request: ConnectorRequest, outcome: InstallOutcome
    ) -> Connector:
        self.require_workspace(workspace_id)
        template = TEMPLATES[request.template_ref]
        if self.reject_duplicates:
            key = _duplicate_key(template.ref, request.arguments)
            if key is not None and any(
                c.workspace_id == workspace_id
                and _duplicate_key(c.template.ref, c.arguments) == key
                for c in self.connectors.values()
            ):
                raise ApiError(409, "ConnectorAlreadyExists", "connector already exists")
        connector_id = self.new_id()
        now = self.now()
        connector = Connector(
            id=connector_id,
            workspace_id=workspace_id,
            name=request.name,
            template=template,
            arguments=request.arguments,
            security_arguments=request.security_arguments,
            conversational=request.conversational,
            region=self.region,
            identifier=make_identifier(template.platform, request.arguments, connector_id),
            outcome=outcome,
            created_at=now,
            updated_at=now,
            seq=next(self._seq),
        )
        self.connectors[connector_id] = connector
        return connector

    def get_connector(self, workspace_id: str, connector_id: str) -> Connector:
        self.require_workspace(workspace_id)
        connector = self.connectors.get(connector_id)
        if connector is None or connector.workspace_id != workspace_id:
            raise not_found("connector")
        return connector

    def list_connectors(self, workspace_id: str, template_ref: str | None) -> list[Connector]:
        self.require_workspace(workspace_id)
        return [
            c
            for c in self.connectors.values()
            if c.workspace_id == workspace_id
            and (template_ref is None or c.template.ref == template_ref)
        ]

    def delete_connector(self, workspace_id: str, connector_id: str) -> Connector:
        """Remove the connector and its channel (bird-api.md 2, Notes)."""
        connector = self.get_connector(workspace_id, connector_id)
        del self.connectors[connector_id]
        if connector.channel is not None:
            self.channels.pop(connector.channel.id, None)
        return connector

    def install_channel(self, connector_id: str) -> ChannelEvent | None:
        """Install step 1: the channel appears, ``pending``. None if the connector is gone."""
        connector = self.connectors.get(connector_id)
        if connector is None or connector.channel is not None:
            return None
        now = self.now()
        channel = Channel(
            id=self.new_id(),
            workspace_id=connector.workspace_id,
            connector_id=connector.id,
            platform_id=connector.template.platform,
            name=connector.name,
            identifier=connector.identifier,
            status="pending",
            capabilities=capabilities_for(connector.template.platform),
            created_at=now,
            updated_at=now,
            seq=next(self._seq),
        )
        connector.channel = channel
        connector.updated_at = now
        self.channels[channel.id] = channel
        return ChannelEvent(connector.workspace_id, "channel.created", channel.to_json())

    def finish_install(self, connector_id: str) -> ChannelEvent | None:
        """Install step 2: ``active``, or ``inactive`` for a failing install; None if stuck/gone."""
        connector = self.connectors.get(connector_id)
        if connector is None or connector.channel is None or connector.outcome == "stuck":
            return None
        if connector.channel.status != "pending":
            return None
        reason = FAILED_INSTALL_REASON if connector.outcome == "inactive" else None
        return self.set_channel_status(connector.channel.id, connector.outcome, reason)

    # -- channels (bird-api.md 3) -----------------------------------------------------------

    def find_channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise not_found("channel")
        return channel

    def get_channel(self, workspace_id: str, channel_id: str) -> Channel:
        self.require_workspace(workspace_id)
        channel = self.channels.get(channel_id)
        if channel is None or channel.workspace_id != workspace_id:
            raise not_found("channel")
        return channel

    def list_channels(
        self, workspace_id: str, *, statuses: list[str], platforms: list[str]
    ) -> list[Channel]:
        self.require_workspace(workspace_id)
        return sorted(
            (
                c
                for c in self.channels.values()
                if c.workspace_id == workspace_id
                and (not statuses or c.status in statuses)
                and (not platforms or c.platform_id in platforms)
            ),
            key=lambda c: c.seq,
        )

    def set_channel_status(
        self, channel_id: str, status: str, reason: str | None = None
    ) -> ChannelEvent:
        channel = self.find_channel(channel_id)
        channel.status = status
        channel.status_reason = reason
        channel.updated_at = self.now()
        return ChannelEvent(channel.workspace_id, "channel.updated", channel.to_json())

    # -- webhook subscriptions (bird-api.md 4) -----------------------------------------------

    def _check_limit(self, candidate: Subscription, ignore_id: str | None = None) -> None:
        same = [
            s
            for s in self.subscriptions.values()
            if s.workspace_id == candidate.workspace_id
            and s.id != ignore_id
            and s.filter_signature() == candidate.filter_signature()
        ]
        if len(same) >= MAX_SAME_SUBSCRIPTIONS:
            raise ApiError(
                409,
                "SubscriptionLimitReached",
                f"at most {MAX_SAME_SUBSCRIPTIONS} subscriptions may share "
                "the same service, event and event filters",
            )

    def create_subscription(
        self, organization_id: str, workspace_id: str, request: SubscriptionRequest
    ) -> Subscription:
        self.require_workspace(workspace_id, organization_id)
        now = self.now()
        subscription = Subscription(
            id=self.new_id(),
            organization_id=organization_id,
            workspace_id=workspace_id,
            service=request.service,
            event=request.event,
            url=request.url,
            event_filters=request.event_filters,
            template=request.template,
            signing_key=request.signing_key,
            status="active",
            created_at=now,
            updated_at=now,
            seq=next(self._seq),
        )
        self._check_limit(subscription)
        self.subscriptions[subscription.id] = subscription
        return subscription

    def get_subscription(
        self, organization_id: str, workspace_id: str, subscription_id: str
    ) -> Subscription:
        self.require_workspace(workspace_id, organization_id)
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription.workspace_id != workspace_id:
            raise not_found("webhook subscription")
        return subscription

    def list_subscriptions(self, organization_id: str, workspace_id: str) -> list[Subscription]:
        self.require_workspace(workspace_id, organization_id)
        return [s for s in self.subscriptions.values() if s.workspace_id == workspace_id]

    def update_subscription(
        self,
        organization_id: str,
        workspace_id: str,
        subscription_id: str,
        changes: dict[str, Any],
    ) -> Subscription:
        """Apply checked PATCH fields (bird-api.md 4.3); the 5-per-combination rule still holds."""
        current = self.get_subscription(organization_id, workspace_id, subscription_id)
        if "eventFilters" in changes:
            candidate = Subscription(**{**vars(current), "event_filters": changes["eventFilters"]})
            self._check_limit(candidate, ignore_id=current.id)
            current.event_filters = changes["eventFilters"]
        if "url" in changes:
            current.url = changes["url"]
        if "template" in changes:
            current.template = changes["template"]
        if "signingKey" in changes:
            current.signing_key = changes["signingKey"]
        if "status" in changes:
            current.status = changes["status"]
            current.status_reason = None
        current.updated_at = self.now()
        return current

    def delete_subscription(
        self, organization_id: str, workspace_id: str, subscription_id: str
    ) -> None:
        self.get_subscription(organization_id, workspace_id, subscription_id)
        del self.subscriptions[subscription_id]
        for request_id in [
            d.request_id for d in self.deliveries.values() if d.subscription_id == subscription_id
        ]:
            del self.deliveries[request_id]

    def matching_subscriptions(self, event: ChannelEvent) -> list[Subscription]:
        attributes = event.attributes
        return [
            s
            for s in self.subscriptions.values()
            if s.workspace_id == event.workspace_id
            and s.matches("channels", event.event, attributes)
        ]

    # -- deliveries (bird-api.md 4.7/4.8) ----------------------------------------------------

    def add_delivery(
        self,
        subscription: Subscription,
        event: ChannelEvent,
        *,
        request_id: str,
        timestamp: str,
        body: bytes,
        signed: bool,
    ) -> Delivery:
        delivery = Delivery(
            request_id=request_id,
            subscription_id=subscription.id,
            workspace_id=subscription.workspace_id,
            event=event.event,
            url=subscription.url,
            timestamp=timestamp,
            body=body,
            signed=signed,
            created_at=self.now(),
            seq=next(self._seq),
        )
        self.deliveries[request_id] = delivery
        return delivery

    def record_attempt(self, delivery: Delivery, attempt: Attempt, *, final: bool) -> None:
        delivery.attempts.append(attempt)
        if attempt.succeeded:
            delivery.execution_status = "succeeded"
        elif final:
            delivery.execution_status = "failed"
        else:
            delivery.execution_status = "retrying"

    def subscription_logs(
        self, subscription: Subscription, execution_status: str | None
    ) -> list[Delivery]:
        return [
            d
            for d in self.deliveries.values()
            if d.subscription_id == subscription.id
            and (execution_status is None or d.execution_status == execution_status)
        ]

    def delivery_for(self, subscription: Subscription, request_id: str) -> Delivery:
        delivery = self.deliveries.get(request_id)
        if delivery is None or delivery.subscription_id != subscription.id:
            raise not_found("webhook log")
        return delivery
