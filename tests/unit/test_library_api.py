"""The bridge uses libraries through their public API; each exception is listed with its reason."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

from aiohttp import web

from bridge.app import bound_port

ROOT = Path(__file__).parents[2]

# (file, expression): private attributes read on purpose, each with its reason.
ALLOWED = {
    # RequestHandler internals for the request-head deadline (aiohttp 3.14 as locked);
    # tests/security/test_http_deadlines.py fails if they change.
    ("bridge/http_server.py", "super()._process_keepalive"),
    ("bridge/http_server.py", "super()._make_server"),
    ("bridge/http_server.py", "plain._kwargs"),
    # The project's own Secret class comparing another instance.
    ("bridge/secret.py", "other._value"),
    # aiokafka has no public "coordinator known" for the commands role's readiness.
    ("bridge/commands/worker.py", "getattr(consumer, '_coordinator', None)"),
    # A topic's partitions from fresh metadata of every topic: the consumer's public
    # partitions_for_topic() knows only the topics it tracks (none at first on Kafka).
    ("bridge/kafka/clients.py", "consumer._client"),
    # A forked HTTP worker leaves with os._exit (public, documented for forked children):
    # never through the parent's atexit handlers and finalizers.
    ("bridge/workers.py", "os._exit"),
    # The webhook path's lock-free histogram and counter write the samples prometheus_client's
    # Histogram and Counter write, _created included only where it does (PROMETHEUS_DISABLE_CREATED_
    # SERIES); tests/unit/test_metrics.py compares the two expositions.
    ("bridge/metrics.py", "prometheus_metrics._use_created"),
    ("bridge/metrics.py", "super()._metric_init"),
}


def private_uses() -> set[tuple[str, str]]:
    """Attributes named ``_x`` read on anything but ``self``/``cls``, and ``getattr`` of one."""
    found: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and ast.unparse(node.value) not in ("self", "cls")
            ) or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
            ):
                found.add((name, ast.unparse(node)))
    return found


def test_no_private_library_attributes_beyond_the_listed_ones() -> None:
    assert private_uses() <= ALLOWED


async def test_bound_port_is_the_port_the_site_listens_on() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = bound_port(runner)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        await runner.cleanup()
