"""Which offset of a partition may be committed while records finish out of order. Pure."""

from __future__ import annotations


class OffsetTracker:
    """Records are added in offset order and finish in any order; the committable offset is
    the first one not yet finished (Kafka's "next offset to read")."""

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.next_offset: int | None = None
        self.committed: int | None = None

    def add(self, offset: int) -> None:
        self.pending.add(offset)
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def done(self, offset: int) -> None:
        self.pending.discard(offset)

    def unfinished_from(self) -> int | None:
        """The first offset not yet finished (what a restart would resume from), whether or
        not it was committed; ``None`` before the first record."""
        if self.next_offset is None:
            return None
        return min(self.pending) if self.pending else self.next_offset

    def committable(self) -> int | None:
        """The offset to commit now, or ``None`` when nothing new can be committed."""
        if self.next_offset is None:
            return None
        offset = min(self.pending) if self.pending else self.next_offset
        if self.committed is not None and offset <= self.committed:
            return None
        return offset
