from bridge.ingest.dedupe import DedupeWindow


def test_remembers_until_the_ttl_passes() -> None:
    window = DedupeWindow(max_entries=10, ttl_s=60)
    window.remember("a", now=0)
    assert window.contains("a", now=59.9)
    assert not window.contains("a", now=60.0)
    assert len(window) == 0


def test_evicts_the_oldest_beyond_the_count_bound() -> None:
    window = DedupeWindow(max_entries=2, ttl_s=60)
    for i, key in enumerate("abc"):
        window.remember(key, now=i)
    assert not window.contains("a", now=3)
    assert window.contains("b", now=3)
    assert window.contains("c", now=3)


def test_zero_entries_disables_the_window() -> None:
    window = DedupeWindow(max_entries=0, ttl_s=60)
    window.remember("a", now=0)
    assert not window.contains("a", now=0)
