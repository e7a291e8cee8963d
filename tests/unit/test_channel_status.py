"""Which channel statuses end a create (bird-api.md 3 and 6: only `active` is documented)."""

from __future__ import annotations

import pytest

from bridge.commands.status import ChannelOutcome, classify_channel_status


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("active", "succeeded"),
        ("Active", "succeeded"),
        (" active ", "succeeded"),
        ("failed", "failed"),
        ("FAILED", "failed"),
        ("error", "failed"),
        # Not known to be final: followed until the follow timeout.
        ("inactive", "pending"),
        ("pending", "pending"),
        ("preview", "pending"),
        ("provisioning", "pending"),
        ("rejected", "pending"),
        ("deleted", "pending"),
        ("disabled", "pending"),
        ("activating", "pending"),
        ("not active", "pending"),
        ("", "pending"),
        (None, "pending"),
        (1, "pending"),
        (["active"], "pending"),
        ({"status": "active"}, "pending"),
    ],
)
def test_only_active_and_explicit_failures_are_final(
    status: object, outcome: ChannelOutcome
) -> None:
    assert classify_channel_status(status) == outcome
