"""The ledger index's tables against plain Python models: every put, remove and lookup, with
keys crowded into a few slots so that runs wrap around the end and deletions shift."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.commands.ledger_index import ExpiryQueue, HashIndex, key_of
from bridge.commands.ledger_state import pack, unpack

# Keys whose low bits collide (they share slots of a 1024-slot table), negatives included.
KEYS = st.builds(
    lambda slot, high: (high << 10) | slot or 1,
    st.sampled_from([0, 1, 1022, 1023]),
    st.integers(-(2**40), 2**40),
)
OPS = st.lists(st.tuples(st.sampled_from(["put", "remove"]), KEYS, st.integers(0, 2**62)))


@settings(max_examples=300, deadline=None)
@given(OPS, st.booleans())
def test_the_table_behaves_as_a_dict(ops: list[tuple[str, int, int]], keys_only: bool) -> None:
    table = HashIndex(keys_only=keys_only)
    model: dict[int, int] = {}
    for op, key, value in ops:
        if op == "put":
            table.put(key, value)
            model[key] = 0 if keys_only else value
        else:
            assert table.remove(key) == (key in model)
            model.pop(key, None)
        assert len(table) == len(model)
    for key, value in model.items():
        assert table.get(key) == value
        assert key in table
    assert dict(table.items()) == model


def test_the_table_grows_and_keeps_everything() -> None:
    table = HashIndex()
    keys = [key_of(f"cmd-{n}".encode()) for n in range(5000)]
    for n, key in enumerate(keys):
        table.put(key, n)
    assert table.slots >= 5000 * 4 // 3
    assert all(table.get(key) == n for n, key in enumerate(keys))
    for key in keys[::2]:
        assert table.remove(key)
    assert len(table) == 2500
    assert all(table.get(key) == (None if n % 2 == 0 else n) for n, key in enumerate(keys))


def test_keys_are_never_the_empty_slot() -> None:
    assert all(key_of(data) != 0 for data in (b"", b"a", b"\x00barrier"))
    assert key_of(b"cmd-1") == key_of(b"cmd-1") != key_of(b"cmd-2")


def test_the_queue_gives_back_expired_rows_in_order() -> None:
    queue = ExpiryQueue()
    for n in range(10):
        queue.append(100 + n, n, 10 * n, 100 * n)
    queue.append(105, 99, 990, 9900)  # behind a later expiry: waits for it
    assert list(queue.pop_expired(99)) == []
    assert list(queue.pop_expired(103)) == [(0, 0, 0), (1, 10, 100), (2, 20, 200), (3, 30, 300)]
    assert len(queue) == 7
    assert [row[0] for row in queue.pop_expired(200)] == [4, 5, 6, 7, 8, 9, 99]
    assert len(queue) == 0


@pytest.mark.parametrize("position", [(0, 0), (5, 123_456_789), (2**15 - 1, 2**46 - 1)])
@pytest.mark.parametrize("rank", [0, 1, 2])
def test_a_place_packs_into_one_integer(rank: int, position: tuple[int, int]) -> None:
    packed = pack(rank, position)
    assert 0 <= packed < 2**63
    assert unpack(packed) == (rank, position)


def test_a_place_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pack(2, (2**15, 0))
    with pytest.raises(ValueError, match="out of range"):
        pack(2, (0, 2**46))
