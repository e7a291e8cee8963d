"""Terminal foreground for ``bridge dev`` under a wrapper such as ``make run``. I/O.

Ctrl-C makes the terminal send SIGINT to its whole foreground process group. Started by
``make``, ``bridge dev`` shares make's group, so make gets the SIGINT too and ends with
``make: *** [run] Interrupt`` and status 130 even though ``bridge dev`` stops cleanly.
``bridge dev`` therefore moves into a process group of its own and makes it the
terminal's foreground for as long as it runs; the wrapper then sees only its clean exit.
Run straight from a shell, ``bridge dev`` already leads its group and nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


def _hand_foreground(fd: int, group: int) -> None:
    # A process outside the foreground group that sets it gets SIGTTOU unless ignored.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, group)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def _terminal() -> int | None:
    """Our terminal's descriptor when we share a foreground group we do not lead."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return None
        group = os.getpgrp()
        if group == os.getpid() or os.tcgetpgrp(fd) != group:
            return None
    except (OSError, ValueError):
        return None
    return fd


@contextlib.contextmanager
def own_foreground() -> Iterator[None]:
    """Lead a foreground process group of our own while the block runs, then hand the
    terminal back to the group we came from."""
    fd = _terminal()
    if fd is None:
        yield
        return
    previous = os.getpgrp()
    try:
        os.setpgid(0, 0)
        _hand_foreground(fd, os.getpid())
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _hand_foreground(fd, previous)
