"""``BRIDGE_HTTP_WORKERS=N``: N worker processes serving one port (I/O, process control).

The parent forks the workers before anything asynchronous exists; each runs the whole
bridge (its own event loop, producer, dedupe window and metrics) and listens with
``SO_REUSEPORT``, so the kernel spreads new connections over them. The parent only
supervises: SIGTERM or SIGINT is passed to every worker, which drains as one process
does (readiness off, in-flight requests answered, producer flushed); the parent exits 0
once all of them exited 0. A worker that exits on its own stops the others and the
parent exits 1, so the orchestrator restarts the whole pod. A parent that dies without
passing anything on (SIGKILL, the OOM killer) takes the workers with it: each gets SIGTERM
from the kernel (Linux's parent-death signal) and drains, rather than holding the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

import structlog

from bridge.processes import die_with_parent

log = structlog.get_logger("bridge.workers")

# After the workers' own shutdown deadline, how long the parent still waits before SIGKILL.
KILL_GRACE_S = 5.0


def run_workers(count: int, serve_one: Callable[[int], int], *, shutdown_timeout_s: float) -> int:
    """Fork ``count`` workers, each calling ``serve_one(index)`` (its exit code), and wait
    for all of them; the exit code is 0 only if every worker stopped on request with 0."""
    pids: dict[int, int] = {}  # pid -> worker index
    parent = os.getpid()
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                die_with_parent(parent)
                structlog.contextvars.bind_contextvars(worker=index)
                code = serve_one(index)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        pids[pid] = index
    log.info("workers started", workers=count, pids=sorted(pids))
    return _supervise(pids, shutdown_timeout_s)


def _supervise(pids: dict[int, int], shutdown_timeout_s: float) -> int:
    running = dict(pids)
    stop_requested_at: float | None = None
    failed = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested_at
        if stop_requested_at is None:
            stop_requested_at = time.monotonic()
        for pid in list(running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if (
                    stop_requested_at is not None
                    and time.monotonic() - stop_requested_at > shutdown_timeout_s + KILL_GRACE_S
                ):
                    log.error("workers did not stop in time; killing", pids=sorted(running))
                    for left in list(running):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(left, signal.SIGKILL)
                    failed = True
                time.sleep(0.05)
                continue
            if pid not in running:
                continue
            index = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stop_requested_at is None:
                # Nobody asked it to stop: take the others down too, and say so.
                log.error("worker exited on its own; stopping the others", worker=index, code=code)
                failed = True
                forward(signal.SIGTERM, None)
            elif code != 0:
                log.error("worker did not stop cleanly", worker=index, code=code)
                failed = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("workers stopped", failed=failed)
    return 1 if failed else 0
