"""``bridge subscriptions ensure``: the bridge's webhook subscriptions at Bird, idempotently.

For each of ``channel.created`` and ``channel.updated`` (service ``channels``): keep a
subscription for our URL as it is, re-point one that targets our webhook path on
another URL, or create one; make sure it is active and signs with our key. Prints
(returns) what it did. Bird may not echo ``signingKey`` (bird-api.md 4.2), so an
existing subscription whose key cannot be read is patched with ours.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.bird.client import BirdClient
from bridge.config import Config

EVENTS = ("channel.created", "channel.updated")
SERVICE = "channels"


def plan(
    existing: list[dict[str, Any]], *, url: str, signing_key: str | None, webhook_path: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """Pure: ``(verb, target, body)`` per event; verb is create, update or keep; target is
    the subscription id to update (or the event name to create)."""
    steps: list[tuple[str, str, dict[str, Any]]] = []
    for event in EVENTS:
        same_event = [
            s for s in existing if s.get("service") == SERVICE and s.get("event") == event
        ]
        ours = [s for s in same_event if s.get("url") == url]
        moved = [s for s in same_event if str(s.get("url", "")).endswith(webhook_path)]
        if ours or len(moved) == 1:
            current = (ours or moved)[0]
            patch: dict[str, Any] = {}
            if current.get("url") != url:
                patch["url"] = url
            if current.get("status") != "active":
                patch["status"] = "active"
            if signing_key is not None and current.get("signingKey") != signing_key:
                patch["signingKey"] = signing_key
            steps.append(("update" if patch else "keep", str(current.get("id")), patch))
        else:
            body: dict[str, Any] = {"service": SERVICE, "event": event, "url": url}
            if signing_key is not None:
                body["signingKey"] = signing_key
            steps.append(("create", event, body))
    return steps


async def ensure_subscriptions(
    config: Config, client: BirdClient, *, webhook_path: str
) -> list[str]:
    """Apply ``plan`` at Bird; return one line per event saying what was done."""
    org, ws = config.bird.organization_id, config.bird.workspace_id
    url = config.webhook.public_url
    if not (org and ws and url):
        raise ValueError("organization id, workspace id and public URL are required")
    key = config.webhook.signing_key.reveal() if config.webhook.signing_key else None
    deadline = time.monotonic() + config.commands.command_deadline_s
    existing = await client.list_subscriptions(org, ws, deadline=deadline)
    done: list[str] = []
    for verb, target, body in plan(existing, url=url, signing_key=key, webhook_path=webhook_path):
        if verb == "create":
            created = await client.create_subscription(org, ws, body, deadline=deadline)
            done.append(f"created {body['event']} subscription {created.get('id')} -> {url}")
        elif verb == "update":
            await client.update_subscription(org, ws, target, body, deadline=deadline)
            changed = ", ".join(sorted(body))
            done.append(f"updated subscription {target} ({changed}) -> {url}")
        else:
            done.append(f"kept subscription {target} -> {url}")
    return done
