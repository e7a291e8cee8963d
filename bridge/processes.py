"""Child processes that end with their parent (Linux)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """In a child of ``parent``: get SIGTERM from the kernel when the parent dies, even by
    SIGKILL (Linux PR_SET_PDEATHSIG; elsewhere nothing). If the parent died before the
    request took effect, SIGTERM now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
