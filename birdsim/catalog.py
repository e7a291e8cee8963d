"""Static Bird facts the simulator serves: connector templates and webhook events (pure).

Sources: bird-api.md 2.3 (templates), 4.1 (services) and 4.6 (channels events and filters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Template:
    ref: str
    platform: str
    required_arguments: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return self.ref.split(":", 1)[0]


# bird-api.md 2.3; 2.4 for the SMS arguments (the other templates document none).
TEMPLATES: dict[str, Template] = {
    t.ref: t
    for t in (
        Template("sms-messagebird:1", "sms", ("phoneNumberId", "channelMessageType")),
        Template("whatsapp:1", "whatsapp"),
        Template("instagram:1", "instagram"),
        Template("facebook:1", "facebook"),
        Template("telegram:1", "telegram"),
        Template("line:1", "line"),
        Template("email-messagebird:1", "email"),
    )
}

# The `capabilities` object of a channel is undocumented beyond its name (bird-api.md 3).
_CAPABILITIES: dict[str, dict[str, Any]] = {
    "sms": {"messaging": {"inbound": True, "outbound": True}, "media": False},
    "email": {"messaging": {"inbound": True, "outbound": True}, "media": True},
}
_DEFAULT_CAPABILITIES: dict[str, Any] = {
    "messaging": {"inbound": True, "outbound": True},
    "media": True,
}


def capabilities_for(platform: str) -> dict[str, Any]:
    return dict(_CAPABILITIES.get(platform, _DEFAULT_CAPABILITIES))


# bird-api.md 4.1: the `service` enum (the newer schema adds `templates`).
SERVICES = ("channels", "numbers", "payments", "conversations", "templates")

# bird-api.md 4.6: message platforms of the <platform>.inbound/outbound/interaction events.
MESSAGE_PLATFORMS = (
    "sms",
    "whatsapp",
    "email",
    "line",
    "instagram",
    "facebook",
    "viber",
    "linkedin",
    "tiktok",
    "applebusinesschat",
    "telegram",
)

CHANNEL_EVENT_FILTERS = ("platformId", "channelStatus")


def _channels_events() -> dict[str, tuple[str, ...]]:
    events: dict[str, tuple[str, ...]] = {}
    for platform in MESSAGE_PLATFORMS:
        events[f"{platform}.inbound"] = ("channelId",)
        events[f"{platform}.outbound"] = ("channelId", "messageStatus")
        events[f"{platform}.interaction"] = ("channelId", "interactionType")
    events["channel.created"] = CHANNEL_EVENT_FILTERS
    events["channel.updated"] = CHANNEL_EVENT_FILTERS
    return events


# service -> event -> filter keys. Services whose events the docs do not list are absent:
# subscriptions to them accept any event name and any filter key.
WEBHOOK_EVENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "channels": _channels_events(),
    "conversations": {
        "conversation.created": (),
        "conversation.updated": (),
        "conversation.deleted": (),
    },
}


def available_webhooks(service: str | None) -> list[dict[str, Any]]:
    """The ``results`` of ``GET /workspaces/{ws}/available-webhooks`` (bird-api.md 4)."""
    services = [service] if service else list(SERVICES)
    return [
        {
            "service": name,
            "events": [
                {"name": event, "filterKeys": list(keys)}
                for event, keys in WEBHOOK_EVENTS.get(name, {}).items()
            ],
        }
        for name in services
    ]
