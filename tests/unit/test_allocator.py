"""The allocator setting: applied on glibc, left to the operator when they set it."""

from __future__ import annotations

import platform

import pytest

from bridge.allocator import fix_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_threshold_is_fixed_on_glibc() -> None:
    assert fix_mmap_threshold({}) is True


def test_the_operators_own_setting_wins() -> None:
    assert fix_mmap_threshold({"MALLOC_MMAP_THRESHOLD_": "262144"}) is False
