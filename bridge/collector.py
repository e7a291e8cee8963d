"""Keep the start-up objects out of the cyclic garbage collector's full passes.

A full collection walks every container object the process holds; in a bridge that is
mostly what start-up made and never frees (modules, classes, functions, the app). Measured
in ``bench.ingest`` at 64 connections: about one full collection every two seconds, each
taking 25 to 37 ms of CPU, during which no request moves. That pause, not the handler,
was the webhook p99 (48 ms against 17 ms with the start-up objects frozen). Once the
bridge serves, ``freeze_startup_objects`` collects what start-up left as garbage (so that
none of it is kept for ever) and moves the rest to the collector's permanent generation:
full passes then walk only what was made since. Objects still die by reference count
as before; only cycles among the frozen objects are never collected.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect, then freeze every object the collector tracks; return how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def unfreeze() -> None:
    """Give the frozen objects back to the collector (at shutdown)."""
    gc.unfreeze()
