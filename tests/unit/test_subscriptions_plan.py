"""Planning ``bridge subscriptions ensure`` (pure)."""

from __future__ import annotations

from bridge.subscriptions import plan

URL = "https://bridge.example.org/webhooks/bird"


def sub(event: str, url: str = URL, **fields: object) -> dict[str, object]:
    return {
        "id": f"id-{event}-{url[-5:]}",
        "service": "channels",
        "event": event,
        "url": url,
        "status": "active",
        **fields,
    }


def test_nothing_there_creates_both() -> None:
    steps = plan([], url=URL, signing_key="k", webhook_path="/webhooks/bird")
    assert [(verb, body["event"]) for verb, _, body in steps] == [
        ("create", "channel.created"),
        ("create", "channel.updated"),
    ]
    assert all(body["signingKey"] == "k" and body["url"] == URL for _, _, body in steps)


def test_matching_subscriptions_are_kept() -> None:
    existing = [sub("channel.created", signingKey="k"), sub("channel.updated", signingKey="k")]
    steps = plan(existing, url=URL, signing_key="k", webhook_path="/webhooks/bird")
    assert [verb for verb, _, _ in steps] == ["keep", "keep"]


def test_moved_url_inactive_or_unknown_key_is_updated() -> None:
    existing = [
        sub("channel.created", url="https://old.example.org/webhooks/bird", signingKey="k"),
        sub("channel.updated", status="inactive"),
        sub("sms.inbound", url="https://other.example.org/hook"),
    ]
    steps = plan(existing, url=URL, signing_key="k", webhook_path="/webhooks/bird")
    assert steps[0][0] == "update"
    assert steps[0][2] == {"url": URL}
    assert steps[1][0] == "update"
    assert steps[1][2] == {"status": "active", "signingKey": "k"}


def test_someone_elses_subscription_is_left_alone() -> None:
    existing = [sub("channel.created", url="https://crm.example.org/bird-hook")]
    steps = plan(existing, url=URL, signing_key=None, webhook_path="/webhooks/bird")
    assert steps[0] == (
        "create",
        "channel.created",
        {"service": "channels", "event": "channel.created", "url": URL},
    )
