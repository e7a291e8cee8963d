"""Request-body validation as Bird does it (pure): every problem reported at once, by JSON path.

Connector bodies follow bird-api.md 2.1/2.4, subscription bodies 4.1/4.3.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from birdsim.catalog import SERVICES, TEMPLATES, WEBHOOK_EVENTS
from birdsim.problems import Problems, invalid_payload

CONNECTOR_FIELDS = (
    "name",
    "connectorTemplateRef",
    "arguments",
    "securityArguments",
    "channelConversationalStatusEnabled",
    "invitationToken",
)
SUBSCRIPTION_FIELDS = ("service", "event", "eventFilters", "template", "url", "signingKey")
PATCHABLE_FIELDS = ("template", "url", "signingKey", "status", "eventFilters")
SUBSCRIPTION_STATUSES = ("active", "inactive")

# bird-api.md 4.1, with the optional `:port` of the newer schema.
BIRD_URL = re.compile(r"https://([a-zA-Z0-9-]+\.)+[a-zA-Z]{2,}(:[0-9]+)?(/[^\s]*)?")
# `allow_http_urls`: http or https, any host name (single labels too, for containers), IPv4,
# bracketed IPv6 (loopback receivers in tests and `bridge dev`).
RELAXED_URL = re.compile(
    r"https?://([a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*|[0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9a-fA-F:.]+\])"
    r"(:[0-9]+)?(/[^\s]*)?"
)


@dataclass(frozen=True)
class ConnectorRequest:
    name: str
    template_ref: str
    arguments: dict[str, Any] | None
    security_arguments: dict[str, Any] | None
    conversational: bool | None
    invitation_token: str | None


@dataclass(frozen=True)
class EventFilter:
    key: str
    value: str


@dataclass(frozen=True)
class SubscriptionRequest:
    service: str
    event: str
    url: str
    event_filters: tuple[EventFilter, ...] | None
    template: str | None
    signing_key: str | None


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _require_object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise invalid_payload({".": ["request body must be a JSON object"]})
    return body


def _unknown_fields(body: Mapping[str, Any], allowed: tuple[str, ...], problems: Problems) -> None:
    for key in body:
        if key not in allowed:
            problems.add(f".{key}", f'property "{key}" is unsupported')


def _nullable_str(body: Mapping[str, Any], key: str, problems: Problems) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        problems.add(f".{key}", "must be a string")
        return None
    return value


def _is_security_map(value: object) -> bool:
    """``securityArguments``: scheme name -> {string: string} (bird-api.md 2.1)."""
    return isinstance(value, dict) and all(
        isinstance(v, dict) and all(isinstance(s, str) for s in v.values()) for v in value.values()
    )


def parse_connector(body: object) -> ConnectorRequest:
    """Validate a ``CreateConnectorReq``; raise 422 ``InvalidPayload`` naming every bad field."""
    data = _require_object(body)
    problems = Problems()
    _unknown_fields(data, CONNECTOR_FIELDS, problems)
    name = data.get("name")
    if name is None:
        problems.add(".name", "is required")
    elif not isinstance(name, str) or not name.strip():
        problems.add(".name", "must be a non-empty string")
    ref = data.get("connectorTemplateRef")
    template = None
    if ref is None:
        problems.add(".connectorTemplateRef", "is required")
    elif not isinstance(ref, str) or ref not in TEMPLATES:
        problems.add(".connectorTemplateRef", f"unknown connector template {ref!r}")
    else:
        template = TEMPLATES[ref]
    arguments = data.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        problems.add(".arguments", "must be an object")
        arguments = None
    if template is not None:
        for arg in template.required_arguments:
            value = (arguments or {}).get(arg)
            if value is None:
                problems.add(f".arguments.{arg}", "is required")
            elif not isinstance(value, str) or not value:
                problems.add(f".arguments.{arg}", "must be a non-empty string")
        # bird-api.md 2.4: "the UUID of a phone number already owned by the workspace".
        phone_number_id = (arguments or {}).get("phoneNumberId")
        if (
            "phoneNumberId" in template.required_arguments
            and isinstance(phone_number_id, str)
            and phone_number_id
            and not is_uuid(phone_number_id)
        ):
            problems.add(".arguments.phoneNumberId", "must be a uuid")
    security = data.get("securityArguments")
    if security is not None and not _is_security_map(security):
        problems.add(".securityArguments", "must map scheme names to string maps")
        security = None
    conversational = data.get("channelConversationalStatusEnabled")
    if conversational is not None and not isinstance(conversational, bool):
        problems.add(".channelConversationalStatusEnabled", "must be a boolean")
        conversational = None
    invitation = _nullable_str(data, "invitationToken", problems)
    problems.raise_payload()
    assert isinstance(name, str)
    assert isinstance(ref, str)
    return ConnectorRequest(
        name=name,
        template_ref=ref,
        arguments=arguments,
        security_arguments=security,
        conversational=conversational,
        invitation_token=invitation,
    )


def check_url(url: object, *, allow_http: bool, problems: Problems) -> str | None:
    if not isinstance(url, str) or not url:
        problems.add(".url", "must be a non-empty string")
        return None
    pattern = RELAXED_URL if allow_http else BIRD_URL
    if pattern.fullmatch(url) is None and BIRD_URL.fullmatch(url) is None:
        problems.add(".url", "must be an https URL with a domain name")
        return None
    return url


def _filter_keys(service: str, event: str) -> tuple[str, ...] | None:
    """Allowed filter keys; ``None`` when the service's events are not catalogued."""
    events = WEBHOOK_EVENTS.get(service)
    if events is None:
        return None
    return events.get(event, ())


def check_event_filters(
    value: object, service: str | None, event: str | None, problems: Problems
) -> tuple[EventFilter, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        problems.add(".eventFilters", "must be an array")
        return None
    allowed = _filter_keys(service, event) if service and event else None
    filters: list[EventFilter] = []
    for index, item in enumerate(value):
        path = f".eventFilters[{index}]"
        if not isinstance(item, dict):
            problems.add(path, "must be an object")
            continue
        for key in item:
            if key not in ("key", "value"):
                problems.add(f"{path}.{key}", f'property "{key}" is unsupported')
        key, val = item.get("key"), item.get("value")
        if not isinstance(key, str) or not key:
            problems.add(f"{path}.key", "must be a non-empty string")
            continue
        if not isinstance(val, str):
            problems.add(f"{path}.value", "must be a string")
            continue
        if allowed is not None and key not in allowed:
            problems.add(f"{path}.key", f'filter "{key}" is not supported for event "{event}"')
        filters.append(EventFilter(key, val))
    # bird-api.md 4.6: the numbers service supports no filters.
    if service == "numbers" and filters:
        problems.add(".eventFilters", "the numbers service supports no event filters")
    # bird-api.md 4.1: only one channelId filter per subscription.
    if sum(1 for f in filters if f.key == "channelId") > 1:
        problems.add(".eventFilters", "at most one channelId filter is allowed")
    return tuple(filters)


def parse_subscription(body: object, *, allow_http: bool) -> SubscriptionRequest:
    """Validate a create-subscription body (bird-api.md 4.1)."""
    data = _require_object(body)
    problems = Problems()
    _unknown_fields(data, SUBSCRIPTION_FIELDS, problems)
    service = data.get("service")
    if service is None:
        problems.add(".service", "is required")
    elif service not in SERVICES:
        problems.add(".service", f"must be one of {', '.join(SERVICES)}")
    event = data.get("event")
    if event is None:
        problems.add(".event", "is required")
    elif not isinstance(event, str) or not event:
        problems.add(".event", "must be a non-empty string")
    elif service in WEBHOOK_EVENTS and event not in WEBHOOK_EVENTS[service]:
        problems.add(".event", f'unknown event "{event}" for service "{service}"')
    if "url" not in data:
        problems.add(".url", "is required")
        url = None
    else:
        url = check_url(data["url"], allow_http=allow_http, problems=problems)
    valid_service = service if isinstance(service, str) and service in SERVICES else None
    valid_event = event if isinstance(event, str) else None
    filters = check_event_filters(data.get("eventFilters"), valid_service, valid_event, problems)
    template = _nullable_str(data, "template", problems)
    signing_key = _nullable_str(data, "signingKey", problems)
    problems.raise_payload()
    assert isinstance(service, str)
    assert isinstance(event, str)
    assert url is not None
    return SubscriptionRequest(
        service=service,
        event=event,
        url=url,
        event_filters=filters,
        template=template,
        signing_key=signing_key,
    )


def parse_subscription_patch(
    body: object, *, service: str, event: str, allow_http: bool
) -> dict[str, Any]:
    """Validate a PATCH body (bird-api.md 4.3); returns the checked fields to change."""
    data = _require_object(body)
    problems = Problems()
    if not data:
        problems.add(".", "at least one property is required")
    for key in data:
        if key in ("service", "event"):
            problems.add(f".{key}", f'property "{key}" cannot be changed')
        elif key not in PATCHABLE_FIELDS:
            problems.add(f".{key}", f'property "{key}" is unsupported')
    changes: dict[str, Any] = {}
    if "url" in data:
        changes["url"] = check_url(data["url"], allow_http=allow_http, problems=problems)
    for key in ("template", "signingKey"):
        if key in data:
            if not isinstance(data[key], str):
                problems.add(f".{key}", "must be a string")
            changes[key] = data[key]
    if "status" in data:
        if data["status"] not in SUBSCRIPTION_STATUSES:
            problems.add(".status", "must be active or inactive")
        changes["status"] = data["status"]
    if "eventFilters" in data:
        changes["eventFilters"] = check_event_filters(
            data["eventFilters"], service, event, problems
        )
    problems.raise_payload()
    return changes
