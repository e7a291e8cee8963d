"""Compact in-memory tables for the ledger's index. Pure.

``HashIndex`` maps 64-bit keys to 64-bit values in two ``array('q')``s (open addressing,
linear probing, backward-shift deletion): 16 bytes a slot (8 for a set of keys), at most
3/4 full, so about 21 to 43 bytes an entry, against about 100 for a ``dict`` of
``int``s. ``ExpiryQueue`` keeps rows of four 64-bit numbers in insertion order, 32 bytes a
row, popped from the front.

Keys are ``key_of(bytes)``: the first 64 bits of the bytes' BLAKE2b digest, never 0 (the
empty slot). The same in every process, so a snapshot of the tables (``export`` /
``restore``, ``ledger_image.py``) can be loaded by another replica.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterator
from hashlib import blake2b

_EMPTY = 0
_MIN_CAPACITY = 1024
_CHUNK = 65536


KEY_HASH = "blake2b-64"  # named in snapshots: a snapshot with other keys is not loaded


def key_of(data: bytes, _blake2b: type[blake2b] = blake2b) -> int:
    """The 64-bit key of ``data`` (signed, little-endian): never 0."""
    return int.from_bytes(_blake2b(data, digest_size=8).digest(), "little", signed=True) or 1


class HashIndex:
    """64-bit keys (never 0) to 64-bit values; ``keys_only``: a set (every value is 0, 8
    bytes a slot)."""

    __slots__ = ("_keys", "_keys_only", "_mask", "_size", "_values")

    def __init__(
        self,
        capacity: int = _MIN_CAPACITY,
        *,
        keys_only: bool = False,
        tables: tuple[array[int], array[int]] | None = None,
    ) -> None:
        """``tables``: the (keys, values) ``export`` returned, taken over (``restore``)."""
        self._keys_only = keys_only
        if tables is not None:
            self._take(*tables)
            return
        slots = _MIN_CAPACITY
        while slots * 3 < capacity * 4:
            slots *= 2
        self._allocate(slots)

    def _take(self, keys: array[int], values: array[int]) -> None:
        slots = len(keys)
        if slots < _MIN_CAPACITY or slots & (slots - 1):
            raise ValueError(f"an index table has {slots} slots, not a power of 2 >= 1024")
        if len(values) != (1 if self._keys_only else slots):
            raise ValueError("an index's values do not match its keys")
        size = slots - keys.count(_EMPTY)
        if size * 4 > slots * 3:
            raise ValueError("an index table is fuller than 3/4")
        self._keys, self._values, self._mask, self._size = keys, values, slots - 1, size

    def _allocate(self, slots: int) -> None:
        self._keys = array("q", bytes(8 * slots))
        # A keys-only table reads every value from one shared zero (``i & 0``).
        self._values = array("q", bytes(8 if self._keys_only else 8 * slots))
        self._mask = slots - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def slots(self) -> int:
        return self._mask + 1

    def get(self, key: int) -> int | None:
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                return 0 if self._keys_only else self._values[i]
            if found == _EMPTY:
                return None
            i = (i + 1) & mask

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def put(self, key: int, value: int) -> None:
        if (self._size + 1) * 4 > (self._mask + 1) * 3:
            self._grow()
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                if not self._keys_only:
                    self._values[i] = value
                return
            if found == _EMPTY:
                keys[i] = key
                if not self._keys_only:
                    self._values[i] = value
                self._size += 1
                return
            i = (i + 1) & mask

    def put_unless_higher(self, key: int, value: int, shift: int) -> bool:
        """``put``, unless the value there is higher in its bits from ``shift`` up (a rank);
        True if put. One probe for both."""
        if (self._size + 1) * 4 > (self._mask + 1) * 3:
            self._grow()
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                if self._values[i] >> shift > value >> shift:
                    return False
                self._values[i] = value
                return True
            if found == _EMPTY:
                keys[i] = key
                self._values[i] = value
                self._size += 1
                return True
            i = (i + 1) & mask

    def reserve(self, size: int) -> None:
        """Room for ``size`` entries without growing."""
        slots = self._mask + 1
        while slots * 3 < size * 4:
            slots *= 2
        if slots > self._mask + 1:
            self._grow(slots)

    def remove(self, key: int) -> bool:
        """Remove ``key``; False if it was not there. The entries after it in its run move
        back (no tombstones: lookups never slow down with deletions)."""
        keys, values, mask = self._keys, self._values, self._mask
        mapped = not self._keys_only
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                break
            if found == _EMPTY:
                return False
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            found = keys[j]
            if found == _EMPTY:
                break
            home = found & mask
            # The entry at j may move to the hole at i unless its home lies in (i, j].
            if (i < j and (home <= i or home > j)) or (j < i and home <= i and home > j):
                keys[i] = found
                if mapped:
                    values[i] = values[j]
                i = j
        keys[i] = _EMPTY
        if mapped:
            values[i] = 0
        self._size -= 1
        return True

    def export(self) -> tuple[array[int], array[int]]:
        """Copies of the tables (keys, values), for ``restore``: memory copies, no loop."""
        return self._keys[:], self._values[:]

    @classmethod
    def restore(cls, keys: array[int], values: array[int], *, keys_only: bool = False) -> HashIndex:
        """The index whose tables ``export`` returned (taken over, not copied). Raises
        ``ValueError`` for tables that cannot be one."""
        return cls(keys_only=keys_only, tables=(keys, values))

    def items(self) -> Iterator[tuple[int, int]]:
        for i, key in enumerate(self._keys):
            if key != _EMPTY:
                yield key, 0 if self._keys_only else self._values[i]

    def _grow(self, slots: int = 0) -> None:
        old_keys, old_values, keys_only = self._keys, self._values, self._keys_only
        self._allocate(slots or (self._mask + 1) * 2)
        for i, key in enumerate(old_keys):
            if key != _EMPTY:
                self.put(key, 0 if keys_only else old_values[i])


class ExpiryQueue:
    """Rows of four 64-bit integers, the first an expiry time, in the order appended; kept
    in chunks of ``_CHUNK`` rows (one large array would be copied whole as it grows)."""

    __slots__ = ("_chunks", "_head", "_size")

    def __init__(self, rows: array[int] | None = None) -> None:
        """``rows``: what ``export`` returned (``restore``)."""
        self._chunks: deque[array[int]] = deque([array("q")])
        self._head = 0  # in the first chunk
        self._size = 0
        if rows is not None:
            if len(rows) % 4:
                raise ValueError("expiry rows are four numbers each")
            # Taken over as the first chunk, never extended (appends go to a new one).
            self._chunks = deque([rows, array("q")])
            self._size = len(rows) // 4

    def __len__(self) -> int:
        return self._size

    def append(self, expiry: int, a: int, b: int, c: int) -> None:
        last = self._chunks[-1]
        if len(last) >= 4 * _CHUNK:
            last = array("q")
            self._chunks.append(last)
        last.extend((expiry, a, b, c))
        self._size += 1

    def due(self, now: float) -> bool:
        """Whether the front row has expired at ``now``."""
        first = self._chunks[0]
        if self._head >= len(first):
            return self._size > 0 and self._next_chunk() and self.due(now)
        return first[self._head] <= now

    def _next_chunk(self) -> bool:
        if len(self._chunks) == 1:
            return False
        self._chunks.popleft()
        self._head = 0
        return True

    def export(self) -> array[int]:
        """A copy of the rows, in order, flat (four numbers a row), for ``restore``."""
        flat = self._chunks[0][self._head :]
        for chunk in list(self._chunks)[1:]:
            flat.extend(chunk)
        return flat

    @classmethod
    def restore(cls, rows: array[int]) -> ExpiryQueue:
        """The queue whose rows ``export`` returned."""
        return cls(rows)

    def pop_expired(self, now: float) -> Iterator[tuple[int, int, int]]:
        """The rows at the front whose expiry is at or before ``now``, removed. Rows behind a
        later expiry wait for it (appends come in roughly the order of their expiry)."""
        while self.due(now):
            rows, head = self._chunks[0], self._head
            self._head = head + 4
            self._size -= 1
            yield rows[head + 1], rows[head + 2], rows[head + 3]
        if len(self._chunks) == 1 and self._head == len(self._chunks[0]):
            self._chunks[0] = array("q")
            self._head = 0
