"""A snapshot of the ledger's index, as bytes and back. Pure.

A commands replica starts by reading the whole ledger topic into its index (``ledger_state.
py``): at a million commands that is over a gigabyte to fetch and decode. A snapshot is the
index itself (its tables, about 80 bytes a command) with the ledger offsets it covers; a
replica that loads one reads only the ledger records after those offsets.

The image is four tables of signed 64-bit numbers: the expiry rows, the places' keys and
values, the claimed connectors' keys. ``table_chunks`` cuts each, in that order, into chunks
that fit a Kafka record; ``ImageBuilder`` puts received chunks back into the tables without
holding the whole image twice. The ``Manifest`` says what the chunks are and which ledger
offsets the image covers; ``ledger_snapshots.py`` stores both in Kafka.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Iterator
from typing import NamedTuple

import msgspec

from bridge.commands.ledger_index import KEY_HASH

FORMAT = 1
TABLES = ("expiryRows", "placeKeys", "placeValues", "claimKeys")
CHUNK_BYTES = 512 * 1024  # under Kafka's default 1 MiB record limit


class LedgerImage(NamedTuple):
    """The index's tables (``LedgerState.export`` / ``restore``)."""

    expiry_rows: array[int]
    place_keys: array[int]
    place_values: array[int]
    claim_keys: array[int]


class Chunk(msgspec.Struct, array_like=True, frozen=True):
    offset: int  # in the snapshots topic's chunk partition
    size: int
    crc32: int


class Manifest(msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=False):
    """What a snapshot is: the image's chunks, and the ledger it covers. The index holds
    every ledger record before ``positions`` (partition -> next offset); the marker records
    (partition -> offset) were written to the ledger by this snapshot, so a loader can tell
    the ledger topic is the one the snapshot was taken of."""

    format: int
    key_hash: str
    byte_order: str
    generation: str
    ledger_topic: str
    window_s: float
    written_at: float
    commands: int
    positions: dict[int, int]
    markers: dict[int, int]
    tables: dict[str, int]  # bytes of each table, in TABLES order
    chunks: list[Chunk]


class UnusableSnapshot(ValueError):
    """A snapshot that cannot be loaded here; the reason says why."""


def table_chunks(table: array[int], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """A table in chunks of at most ``chunk_bytes``."""
    data = memoryview(table).cast("B")
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes].tobytes()


def image_chunks(image: LedgerImage, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The image's tables, one after another, in chunks of at most ``chunk_bytes``."""
    for table in image:
        yield from table_chunks(table, chunk_bytes)


def table_sizes(image: LedgerImage) -> dict[str, int]:
    return {name: len(table) * table.itemsize for name, table in zip(TABLES, image, strict=True)}


def check_manifest(manifest: Manifest, *, ledger_topic: str, window_s: float) -> None:
    """Raises ``UnusableSnapshot`` for a manifest this process cannot load."""
    if manifest.format != FORMAT:
        raise UnusableSnapshot(f"format {manifest.format}, this bridge reads {FORMAT}")
    if manifest.key_hash != KEY_HASH:
        raise UnusableSnapshot(f"keys hashed with {manifest.key_hash}, not {KEY_HASH}")
    if manifest.byte_order != sys.byteorder:
        raise UnusableSnapshot(f"written on a {manifest.byte_order}-endian machine")
    if manifest.ledger_topic != ledger_topic:
        raise UnusableSnapshot(f"taken of the ledger topic {manifest.ledger_topic!r}")
    if manifest.window_s != window_s:
        # Its expiry rows were computed with another idempotency window.
        raise UnusableSnapshot(f"taken with an idempotency window of {manifest.window_s} s")
    if list(manifest.tables) != list(TABLES) or any(size % 8 for size in manifest.tables.values()):
        raise UnusableSnapshot("its tables are not the ones this bridge writes")
    if sum(chunk.size for chunk in manifest.chunks) != sum(manifest.tables.values()):
        raise UnusableSnapshot("its chunks do not add up to its tables")


class ImageBuilder:
    """Puts a manifest's chunks, in order, back into the tables; ``image()`` once all came."""

    def __init__(self, manifest: Manifest) -> None:
        self._chunks = manifest.chunks
        sizes = list(manifest.tables.values())
        # Each table at its full size at once: growing it chunk by chunk would copy it.
        self._tables: list[array[int]] = [array("q", bytes(size)) for size in sizes]
        self._views = [memoryview(table).cast("B") for table in self._tables]
        self._remaining = sizes
        self._table = 0
        self._received = 0

    @property
    def complete(self) -> bool:
        return self._received == len(self._chunks)

    def add(self, data: bytes) -> None:
        """The next chunk. Raises ``UnusableSnapshot`` for one that is not what the
        manifest says it is."""
        if self.complete:
            raise UnusableSnapshot("more chunks than its manifest names")
        expected = self._chunks[self._received]
        if len(data) != expected.size or zlib.crc32(data) != expected.crc32:
            raise UnusableSnapshot(f"chunk {self._received} is not the one its manifest names")
        self._received += 1
        view = memoryview(data)
        while view:
            while self._table < len(TABLES) and self._remaining[self._table] == 0:
                self._table += 1
            if self._table == len(TABLES):
                raise UnusableSnapshot("its chunks hold more than its tables")
            table = self._views[self._table]
            part = view[: self._remaining[self._table]]
            start = len(table) - self._remaining[self._table]
            table[start : start + len(part)] = part
            self._remaining[self._table] -= len(part)
            view = view[len(part) :]

    def image(self) -> LedgerImage:
        if not self.complete or any(self._remaining):
            raise UnusableSnapshot("some of its chunks are missing")
        for view in self._views:
            view.release()
        return LedgerImage(*self._tables)


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.encode(manifest)


def decode_manifest(value: bytes) -> Manifest:
    try:
        return msgspec.json.decode(value, type=Manifest)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise UnusableSnapshot(f"its manifest does not decode: {exc}") from None
