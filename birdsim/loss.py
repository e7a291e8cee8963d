"""Lost webhooks (pure): the simulator can drop channel events before any delivery, as
when Bird gives up on a webhook, so tests can create drift for reconciliation to heal.

The channel still changes at Bird (the API shows it); only the webhooks never leave.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WebhookLoss:
    next_count: int = 0  # lose the next N channel events
    all: bool = False  # lose every channel event until turned off
    lost: int = 0  # how many were lost so far

    def take(self) -> bool:
        """Whether the channel event at hand is lost (counts it)."""
        if self.all:
            self.lost += 1
            return True
        if self.next_count > 0:
            self.next_count -= 1
            self.lost += 1
            return True
        return False

    def to_json(self) -> dict[str, int | bool]:
        return {"next": self.next_count, "all": self.all, "lost": self.lost}
