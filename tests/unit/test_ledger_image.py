"""The ledger index's snapshot image: tables to chunks and back, and what makes one unusable."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zlib
from array import array

import pytest

from bridge.commands.ledger_image import (
    FORMAT,
    TABLES,
    Chunk,
    ImageBuilder,
    LedgerImage,
    Manifest,
    UnusableSnapshot,
    check_manifest,
    decode_manifest,
    encode_manifest,
    image_chunks,
    table_sizes,
)
from bridge.commands.ledger_index import KEY_HASH, ExpiryQueue, HashIndex, key_of
from bridge.commands.ledger_state import Entry, LedgerState
from bridge.commands.parse import parse_command
from bridge.errors import InvalidCommand

NOW = 1_800_000_000.0
STARTED = "2027-01-15T08:00:00+00:00"  # NOW is 2027-01-15T08:00:00Z


def state_with(commands: int) -> LedgerState:
    state = LedgerState(window_s=3600)
    for n in range(commands):
        entry = Entry(f"c-{n}", "fp", "create", "started", STARTED)
        if n % 3 == 0:
            entry = entry.accepted({"id": f"k-{n}"}, None).final(b"{}")
        state.apply(entry, (n % 4, n), NOW)
    return state


def manifest_of(image: LedgerImage, chunk_bytes: int, **changes: object) -> Manifest:
    chunks = [
        Chunk(offset, len(data), zlib.crc32(data))
        for offset, data in enumerate(image_chunks(image, chunk_bytes))
    ]
    fields: dict[str, object] = {
        "format": FORMAT,
        "key_hash": KEY_HASH,
        "byte_order": sys.byteorder,
        "generation": "g-1",
        "ledger_topic": "ledger",
        "window_s": 3600.0,
        "written_at": NOW,
        "commands": 0,
        "positions": {0: 10, 1: 12},
        "markers": {0: 9, 1: 11},
        "tables": table_sizes(image),
        "chunks": chunks,
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


def rebuilt(image: LedgerImage, manifest: Manifest, chunk_bytes: int) -> LedgerImage:
    builder = ImageBuilder(manifest)
    for data in image_chunks(image, chunk_bytes):
        builder.add(data)
    return builder.image()


@pytest.mark.parametrize("chunk_bytes", [8, 1000, 4096 * 3 + 8, 1 << 20])
def test_an_index_comes_back_from_its_chunks_whatever_their_size(chunk_bytes: int) -> None:
    state = state_with(3000)
    image = state.export()
    manifest = decode_manifest(encode_manifest(manifest_of(image, chunk_bytes)))
    restored = LedgerState(window_s=3600)
    restored.load(rebuilt(image, manifest, chunk_bytes))
    assert len(restored) == len(state) == 3000
    for n in range(3000):
        assert restored.locate(f"c-{n}") == (n % 4, n)
        assert restored.is_claimed(f"k-{n}") == (n % 3 == 0)
    assert restored.locate("c-3000") is None
    # The expiry rows came along: the final entries go when their window is up.
    restored.expire(NOW + 3601)
    assert len(restored) == 2000
    assert restored.locate("c-0") is None
    assert restored.locate("c-1") == (1, 1)


def test_the_export_is_a_copy() -> None:
    state = state_with(10)
    image = state.export()
    state.apply(Entry("c-new", "fp", "get", "started", STARTED), (0, 99), NOW)
    restored = LedgerState(window_s=3600)
    restored.load(image)
    assert restored.locate("c-new") is None
    assert len(restored) == 10


def test_a_chunk_that_is_not_what_the_manifest_says_is_refused() -> None:
    image = state_with(100).export()
    manifest = manifest_of(image, 512)
    chunks = list(image_chunks(image, 512))
    builder = ImageBuilder(manifest)
    builder.add(chunks[0])
    with pytest.raises(UnusableSnapshot, match="chunk 1 is not the one"):
        builder.add(chunks[2])
    short = ImageBuilder(manifest)
    for data in chunks[:-1]:
        short.add(data)
    with pytest.raises(UnusableSnapshot, match="missing"):
        short.image()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": FORMAT + 1}, "format"),
        ({"key_hash": "siphash"}, "keys hashed with siphash"),
        ({"byte_order": "big" if sys.byteorder == "little" else "little"}, "endian"),
        ({"ledger_topic": "another"}, "ledger topic 'another'"),
        ({"window_s": 60.0}, "idempotency window"),
        ({"tables": {"placeKeys": 8}}, "tables"),
        ({"chunks": []}, "do not add up"),
    ],
)
def test_a_manifest_this_bridge_cannot_load_says_why(
    change: dict[str, object], reason: str
) -> None:
    manifest = manifest_of(state_with(10).export(), 4096, **change)
    with pytest.raises(UnusableSnapshot, match=reason):
        check_manifest(manifest, ledger_topic="ledger", window_s=3600.0)


def test_a_manifest_that_does_not_decode_is_unusable() -> None:
    with pytest.raises(UnusableSnapshot, match="does not decode"):
        decode_manifest(b'{"format": 1}')


def test_tables_that_cannot_be_an_index_are_refused() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        HashIndex.restore(array("q", bytes(8 * 1000)), array("q", bytes(8 * 1000)))
    with pytest.raises(ValueError, match="values"):
        HashIndex.restore(array("q", bytes(8 * 1024)), array("q", [0]))
    full = array("q", range(1, 1025))
    with pytest.raises(ValueError, match="fuller"):
        HashIndex.restore(full, array("q", [0]), keys_only=True)
    state = state_with(5)
    before = state.export()
    with pytest.raises(ValueError, match="four numbers"):
        state.load(before._replace(expiry_rows=array("q", [1, 2, 3])))
    assert len(state) == 5  # unchanged


def test_an_expiry_queue_comes_back_from_the_row_it_had_reached() -> None:
    queue = ExpiryQueue()
    for n in range(10):
        queue.append(n, n, n, n)
    assert [key for key, _, _ in queue.pop_expired(3)] == [0, 1, 2, 3]
    restored = ExpiryQueue.restore(queue.export())
    assert len(restored) == 6
    assert [key for key, _, _ in restored.pop_expired(100)] == [4, 5, 6, 7, 8, 9]


def test_keys_are_the_same_in_every_process() -> None:
    """Snapshots are loaded by other processes: the key of a commandId must not depend on
    the process (Python's own ``hash`` of bytes is seeded per process)."""
    digest = hashlib.blake2b(b"cmd-1", digest_size=8).digest()
    assert key_of(b"cmd-1") == int.from_bytes(digest, "little", signed=True)
    code = "from bridge.commands.ledger_index import key_of; print(key_of(b'cmd-1'))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(out.stdout) == key_of(b"cmd-1")


def test_the_tables_are_the_ones_a_snapshot_names() -> None:
    assert list(table_sizes(state_with(1).export())) == list(TABLES)


def test_a_command_id_may_not_take_the_ledgers_own_keys() -> None:
    with pytest.raises(InvalidCommand, match="commandId: must not start with a NUL"):
        parse_command(
            b'{"commandId": "\\u0000barrier", "action": "get", "connectorId": "k-1"}',
            default_workspace_id="ws-1",
        )


def test_an_index_that_changes_while_its_snapshot_is_copied_loads_right() -> None:
    """The tables are copied one step at a time while the index goes on (new commands, a
    final entry expiring). Loaded, and given again what came after the first step (as a
    replica reads the ledger from the snapshot's positions on), it is the live index."""
    live = LedgerState(window_s=3600)
    early = Entry("c-early", "fp", "get", "started", "2027-01-15T07:01:40+00:00").final(b"{}")
    live.apply(early, (0, 0), NOW)  # started at NOW - 3500: expires at NOW + 100
    for n in range(1, 50):
        live.apply(Entry(f"c-{n}", "fp", "create", "started", STARTED), (0, n), NOW)
    after_first_step: list[tuple[Entry, tuple[int, int]]] = []

    def apply(entry: Entry, position: tuple[int, int], now: float) -> None:
        live.apply(entry, position, now)
        after_first_step.append((entry, position))

    steps = live.export_in_steps()
    tables = list(next(steps))  # the expiry rows
    apply(
        Entry("c-1", "fp", "create", "started", STARTED).accepted({"id": "k-1"}, None), (0, 50), NOW
    )
    live.expire(NOW + 200)  # c-early goes, between the copies
    tables += next(steps)  # the places
    apply(
        Entry("c-2", "fp", "create", "started", STARTED).accepted({"id": "k-2"}, None), (0, 51), NOW
    )
    final = Entry("c-1", "fp", "create", "started", STARTED).accepted({"id": "k-1"}, None)
    apply(final.final(b"{}"), (0, 52), NOW)
    tables += next(steps)  # the claims
    apply(Entry("c-60", "fp", "get", "started", STARTED), (0, 53), NOW)

    loaded = LedgerState(window_s=3600)
    loaded.load(LedgerImage(*tables))
    for entry, position in after_first_step:
        loaded.apply(entry, position, NOW)
    loaded.expire(NOW + 200)
    assert len(loaded) == len(live) == 50
    for command_id in ["c-early", "c-60", *(f"c-{n}" for n in range(1, 50))]:
        assert loaded.locate(command_id) == live.locate(command_id), command_id
    assert loaded.is_claimed("k-1")
    assert loaded.is_claimed("k-2")
    # c-1's final entry expires in both at the same time, with its claim.
    loaded.expire(NOW + 3601)
    live.expire(NOW + 3601)
    assert loaded.locate("c-1") is None
    assert live.locate("c-1") is None
    assert not loaded.is_claimed("k-1")
