"""``bridge subscriptions ensure``: the bridge's webhook subscriptions at Bird, idempotently,
for every configured workspace (contract 12), each with its own key and URL.

For each of ``channel.created`` and ``channel.updated`` (service ``channels``): keep a
subscription for our URL as it is, re-point one that targets our webhook path on
another URL, or create one; make sure it is active and signs with our key. Prints
(returns) what it did. Bird may not echo ``signingKey`` (bird-api.md 4.2), so an
existing subscription whose key cannot be read is patched with ours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bridge.bird.client import BirdClient
from bridge.config import Config
from bridge.errors import BirdError
from bridge.workspaces import webhook_url

EVENTS = ("channel.created", "channel.updated")
SERVICE = "channels"


def plan(
    existing: list[dict[str, Any]],
    *,
    url: str,
    signing_key: str | None,
    webhook_path: str | tuple[str, ...],
) -> list[tuple[str, str, dict[str, Any]]]:
    """Pure: ``(verb, target, body)`` per event; verb is create, update or keep; target is
    the subscription id to update (or the event name to create). A subscription whose URL
    ends with ``webhook_path`` (or one of them) is ours on another URL: it is moved."""
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


@dataclass(frozen=True)
class Target:
    """One workspace's subscriptions: where, signed with which key, for which URL."""

    organization_id: str
    workspace_id: str
    url: str
    signing_key: str | None
    webhook_path: str | tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """What ``ensure`` did for one workspace: a line per event, or the error that stopped it."""

    workspace_id: str
    lines: list[str]
    error: str | None = None
    error_code: str | None = None  # ``BirdError.code``

    def summary(self) -> str:
        if self.error is not None:
            return f"workspace {self.workspace_id}: failed: {self.error}"
        verbs = [line.split(" ", 1)[0] for line in self.lines]
        counts = ", ".join(f"{verb} {verbs.count(verb)}" for verb in ("created", "updated", "kept"))
        return f"workspace {self.workspace_id}: {counts}"


def targets(config: Config, *, webhook_path: str) -> list[Target]:
    """Every configured workspace's target. With the workspaces file each has its own URL,
    the public URL + ``/<workspaceId>``; a subscription still on the single-workspace URL
    (``webhook_path``) is moved there. Without it: the one URL, as in v1."""
    url = config.webhook.public_url
    if not url:
        raise ValueError("the public URL is required")
    if not config.bird.workspaces_from_file:
        org, ws = config.bird.organization_id, config.bird.workspace_id
        if not (org and ws):
            raise ValueError("organization id and workspace id are required")
        key = config.webhook.signing_key
        return [Target(org, ws, url, key.reveal() if key else None, webhook_path)]
    found = []
    for workspace in config.workspaces:
        assert workspace.organization_id is not None  # the file requires it
        own_path = f"{webhook_path}/{quote(workspace.id, safe='')}"
        key = workspace.signing_key
        found.append(
            Target(
                workspace.organization_id,
                workspace.id,
                webhook_url(url, workspace.id),
                key.reveal() if key else None,
                (own_path, webhook_path),
            )
        )
    return found


async def ensure_target(client: BirdClient, target: Target, *, deadline_s: float) -> list[str]:
    """Apply ``plan`` at Bird for one workspace; return one line per event."""
    org, ws, url = target.organization_id, target.workspace_id, target.url
    deadline = time.monotonic() + deadline_s
    existing = await client.list_subscriptions(org, ws, deadline=deadline)
    done: list[str] = []
    steps = plan(
        existing, url=url, signing_key=target.signing_key, webhook_path=target.webhook_path
    )
    for verb, subscription, body in steps:
        if verb == "create":
            created = await client.create_subscription(org, ws, body, deadline=deadline)
            done.append(f"created {body['event']} subscription {created.get('id')} -> {url}")
        elif verb == "update":
            await client.update_subscription(org, ws, subscription, body, deadline=deadline)
            changed = ", ".join(sorted(body))
            done.append(f"updated subscription {subscription} ({changed}) -> {url}")
        else:
            done.append(f"kept subscription {subscription} -> {url}")
    return done


async def ensure_subscriptions(
    config: Config, client: BirdClient, *, webhook_path: str
) -> list[str]:
    """Every workspace's subscriptions, one after the other; the first failure raises."""
    done: list[str] = []
    for target in targets(config, webhook_path=webhook_path):
        done.extend(
            await ensure_target(client, target, deadline_s=config.commands.command_deadline_s)
        )
    return done


async def ensure_every_workspace(
    config: Config, client: BirdClient, *, webhook_path: str
) -> list[Report]:
    """Every workspace's subscriptions; a workspace that fails does not stop the others."""
    reports = []
    for target in targets(config, webhook_path=webhook_path):
        try:
            lines = await ensure_target(
                client, target, deadline_s=config.commands.command_deadline_s
            )
        except BirdError as exc:
            reports.append(Report(target.workspace_id, [], exc.message, exc.code))
        else:
            reports.append(Report(target.workspace_id, lines))
    return reports
