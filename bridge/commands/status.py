"""Which channel statuses end a create, and how. Pure.

Bird documents one channel status, ``active`` (examples), and ``preview`` as a value of
the status filter (bird-api.md 3 and 6); SDK typings add ``inactive`` and ``pending``.
No status is documented as final failure, and ``inactive`` may be a step of an install
that is still going on. So only ``active`` ends a create early as ``succeeded``, and only
a status whose name says that the install failed ends it early as ``failed``. Every
other value, known or not, is followed until ``BRIDGE_COMMANDS_FOLLOW_TIMEOUT_S``
passes (then ``failed`` with ``timeout``, naming the last status seen).
"""

from __future__ import annotations

from typing import Literal

ChannelOutcome = Literal["succeeded", "failed", "pending"]

ACTIVE = "active"
# Statuses that can only mean that the install failed; none of them has been seen from
# Bird, they are here so that an explicit failure is not followed until the deadline.
FAILED_STATUSES = frozenset({"failed", "error"})


def classify_channel_status(status: object) -> ChannelOutcome:
    """``succeeded`` for ``active``, ``failed`` for an explicit failure, else ``pending``
    (keep following). Compared without regard to case or surrounding spaces."""
    if not isinstance(status, str):
        return "pending"
    word = status.strip().casefold()
    if word == ACTIVE:
        return "succeeded"
    if word in FAILED_STATUSES:
        return "failed"
    return "pending"
