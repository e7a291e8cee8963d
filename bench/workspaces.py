"""Several workspaces: what 500 (or ``--workspaces N``) cost beside one, in a fresh process each.

For each count: the time from reading the config to an app with both roles built (the
workspaces file parsed, the webhook lookup and the Bird client's per-workspace keys made),
the memory that adds (tracemalloc: Python allocations still held, and the process's peak
RSS), and the per-request work that depends on the count: finding the workspace and
verifying its signature, and the secret redaction of the request's log line.

    python -m bench.workspaces [--workspaces 500] [--requests 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc
import uuid
from pathlib import Path

PUBLIC_URL = "https://bridge.example.org/webhooks/bird"


def write_file(folder: Path, count: int) -> Path:
    lines = [
        "[[workspace]]\n"
        f'id = "{uuid.UUID(int=n + 1)}"\n'
        f'organizationId = "{uuid.UUID(int=10_000 + n // 10)}"\n'
        f'accessKey = "access-key-{n // 10:06d}-{uuid.uuid4().hex}"\n'
        f'signingKey = "signing-key-{n:06d}-{uuid.uuid4().hex}"\n'
        for n in range(count)
    ]
    path = folder / "workspaces.toml"
    path.write_text("\n".join(lines))
    return path


def measure(count: int, requests: int) -> dict[str, float]:
    """Run in the child process: one count, figures out as JSON."""
    from bridge import config as config_module
    from bridge.app import Bridge, build_app
    from bridge.bird.client import BirdClient
    from bridge.ingest.verify import sign, verify_signature
    from bridge.logs import Redactor
    from bridge.workspaces import webhook_url

    with tempfile.TemporaryDirectory() as folder:
        path = write_file(Path(folder), count)
        environ = {"BRIDGE_WORKSPACES_FILE": str(path), "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL}
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        config = config_module.load(environ)
        config.require(["ingest", "commands"])
        bridge = Bridge(config, ["ingest", "commands"])
        app = build_app(bridge)
        client = BirdClient(config.bird, bridge.metrics)
        redactor = Redactor(config.secrets())
        startup_s = time.perf_counter() - started
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    assert app is not None
    assert client is not None
    # The per-request part: the lookup, then verifying with that workspace's keys.
    last = config.workspaces[-1]
    url = webhook_url(PUBLIC_URL, last.id)
    body = b'{"service":"channels","event":"channel.updated","payload":{}}'
    assert last.signing_key is not None
    signature = sign(last.signing_key.reveal(), "1751742552", url, body)
    targets = {w.id: (w.signing_keys, webhook_url(PUBLIC_URL, w.id)) for w in config.workspaces}

    def one_request() -> None:
        keys, signed_url = targets[last.id]
        verify_signature(
            signatures=[signature], timestamps=["1751742552"], url=signed_url, body=body, keys=keys
        )

    verify_us = timeit.timeit(one_request, number=requests) / requests * 1e6
    line = {
        "event": "webhook",
        "request_id": str(uuid.uuid4()),
        "status": 204,
        "outcome": "published",
        "duration_ms": 1.23,
        "workspace_id": last.id,
        "logger": "bridge.ingest",
        "level": "info",
        "timestamp": "2026-12-01T18:00:00.000000Z",
    }
    redact_us = timeit.timeit(lambda: redactor(None, "info", dict(line)), number=requests)
    return {
        "workspaces": count,
        "startup_s": startup_s,
        "held_mb": held / 1e6,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "verify_us": verify_us,
        "redact_log_line_us": redact_us / requests * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspaces", type=int, default=500)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.requests)))
        return 0
    rows = []
    for count in (1, args.workspaces):
        child = ["--child", str(count), "--requests", str(args.requests)]
        out = subprocess.run(
            [sys.executable, "-m", "bench.workspaces", *child],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout))
    print(
        "| workspaces | start-up | memory held | peak RSS | lookup + verify | log line redaction |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['workspaces']} | {r['startup_s'] * 1000:.0f} ms | {r['held_mb']:.2f} MB "
            f"| {r['max_rss_mb']:.0f} MB | {r['verify_us']:.1f} us "
            f"| {r['redact_log_line_us']:.1f} us |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
