"""``bridge simulator``: run the Bird API simulator until SIGINT/SIGTERM (I/O at ``main`` only).

Flags override the environment (``BRIDGE_BIRD_ACCESS_KEY``, ``BRIDGE_BIRD_ORGANIZATION_ID``,
``BRIDGE_BIRD_WORKSPACE_ID``, ``BRIDGE_SIMULATOR_ADMIN_TOKEN``), which overrides the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bridge import logs
from bridge.errors import ConfigError
from bridge.simulator.faults import check_faults
from bridge.simulator.server import SimulatorServer
from bridge.simulator.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    MAX_DELIVERY_ATTEMPTS,
    FaultSettings,
    SimulatorSettings,
)

DEFAULT_PORT = 8081


@dataclass(frozen=True)
class Options:
    settings: SimulatorSettings
    host: str
    port: int
    log_format: str
    log_level: str


def build_parser() -> argparse.ArgumentParser:
    d, f = SimulatorSettings(), FaultSettings()
    p = argparse.ArgumentParser(
        prog="bridge simulator",
        description="Simulate Bird's channel connectors and webhook API (see docs/simulator.md).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument(
        "--access-key",
        action="append",
        dest="access_keys",
        metavar="KEY",
        help=f"accepted key (repeatable; default $BRIDGE_BIRD_ACCESS_KEY or {DEV_ACCESS_KEY})",
    )
    p.add_argument("--organization-id", help=f"default {DEFAULT_ORGANIZATION_ID}")
    p.add_argument(
        "--workspace-id",
        action="append",
        dest="workspace_ids",
        metavar="UUID",
        help=f"workspace (repeatable; default {DEFAULT_WORKSPACE_ID})",
    )
    p.add_argument("--admin-token", help="require `Authorization: Bearer <token>` on /_simulator")
    p.add_argument("--install-delay", type=float, default=d.install_delay_s, metavar="S")
    p.add_argument("--activate-delay", type=float, default=d.activate_delay_s, metavar="S")
    p.add_argument("--allow-http-urls", action="store_true", help="accept http/local hook URLs")
    p.add_argument("--reject-duplicates", action="store_true", help="409 on a repeated connector")
    p.add_argument("--delivery-retry-base", type=float, default=d.delivery_retry_base_s)
    p.add_argument("--delivery-retry-cap", type=float, default=d.delivery_retry_cap_s)
    p.add_argument(
        "--delivery-max-attempts",
        type=int,
        default=d.delivery_max_attempts,
        help=f"at most {MAX_DELIVERY_ATTEMPTS}",
    )
    p.add_argument("--delivery-timeout", type=float, default=d.delivery_timeout_s, metavar="S")
    faults = p.add_argument_group("faults (also settable at run time: PUT /_simulator/faults)")
    faults.add_argument("--latency", type=float, default=f.latency_s, metavar="S")
    faults.add_argument("--latency-jitter", type=float, default=f.latency_jitter_s, metavar="S")
    faults.add_argument("--error-rate", type=float, default=f.error_rate, metavar="P")
    faults.add_argument("--error-status", type=int, default=f.error_status)
    faults.add_argument("--throttle-rate", type=float, default=f.throttle_rate, metavar="P")
    faults.add_argument(
        "--throttle-no-retry-after-rate",
        type=float,
        default=f.throttle_no_retry_after_rate,
        metavar="P",
    )
    faults.add_argument("--retry-after", type=int, default=f.retry_after_s, metavar="S")
    faults.add_argument("--timeout-rate", type=float, default=f.timeout_rate, metavar="P")
    faults.add_argument("--hang", type=float, default=f.hang_s, metavar="S")
    faults.add_argument("--reset-rate", type=float, default=f.reset_rate, metavar="P")
    faults.add_argument("--rate-limit-get", type=float, default=f.rate_limit_get_per_s)
    faults.add_argument("--rate-limit-post", type=float, default=f.rate_limit_post_per_s)
    faults.add_argument("--fail-installs", action="store_true")
    faults.add_argument("--stuck-installs", action="store_true")
    faults.add_argument("--seed", type=int, default=None)
    p.add_argument("--log-format", choices=("json", "console"), default="console")
    p.add_argument("--log-level", default="info")
    return p


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    """Flags > environment > defaults; raise ``ConfigError`` listing every problem."""
    a = build_parser().parse_args(list(argv))
    env_key = environ.get("BRIDGE_BIRD_ACCESS_KEY")
    env_ws = environ.get("BRIDGE_BIRD_WORKSPACE_ID")
    faults = FaultSettings(
        latency_s=a.latency,
        latency_jitter_s=a.latency_jitter,
        error_rate=a.error_rate,
        error_status=a.error_status,
        throttle_rate=a.throttle_rate,
        throttle_no_retry_after_rate=a.throttle_no_retry_after_rate,
        retry_after_s=a.retry_after,
        timeout_rate=a.timeout_rate,
        hang_s=a.hang,
        reset_rate=a.reset_rate,
        rate_limit_get_per_s=a.rate_limit_get,
        rate_limit_post_per_s=a.rate_limit_post,
        fail_installs=a.fail_installs,
        stuck_installs=a.stuck_installs,
        seed=a.seed,
    )
    settings = SimulatorSettings(
        access_keys=tuple(a.access_keys or [env_key or DEV_ACCESS_KEY]),
        organization_id=a.organization_id
        or environ.get("BRIDGE_BIRD_ORGANIZATION_ID")
        or DEFAULT_ORGANIZATION_ID,
        workspace_ids=tuple(a.workspace_ids or [env_ws or DEFAULT_WORKSPACE_ID]),
        install_delay_s=a.install_delay,
        activate_delay_s=a.activate_delay,
        reject_duplicates=a.reject_duplicates,
        allow_http_urls=a.allow_http_urls,
        delivery_retry_base_s=a.delivery_retry_base,
        delivery_retry_cap_s=a.delivery_retry_cap,
        delivery_max_attempts=a.delivery_max_attempts,
        delivery_timeout_s=a.delivery_timeout,
        admin_token=a.admin_token or environ.get("BRIDGE_SIMULATOR_ADMIN_TOKEN") or None,
        faults=faults,
    )
    problems = settings.problems() + check_faults(faults)
    if not 0 <= a.port <= 65535:
        problems.append("port: must be in 0..65535")
    if problems:
        raise ConfigError(problems)
    return Options(settings, a.host, a.port, a.log_format, a.log_level)


def _describe_keys(keys: Sequence[str]) -> str:
    # Only the public dev key is ever shown; real keys stay out of the output.
    if list(keys) == [DEV_ACCESS_KEY]:
        return f"Authorization: AccessKey {DEV_ACCESS_KEY}"
    return f"{len(keys)} access key(s) from the flags/environment (not shown)"


async def serve(options: Options) -> None:
    """Listen until SIGINT or SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SimulatorServer(options.settings, host=options.host, port=options.port) as sim:
            s = options.settings
            print(f"Bird simulator listening on {sim.url}", flush=True)
            print(f"  organization: {s.organization_id}", flush=True)
            print(f"  workspaces:   {', '.join(s.workspace_ids)}", flush=True)
            print(f"  auth:         {_describe_keys(s.access_keys)}", flush=True)
            print(f"  control API:  {sim.url}/_simulator/", flush=True)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"bridge simulator: {exc}", file=sys.stderr)
        return 2
    secrets = [*options.settings.access_keys, options.settings.admin_token or ""]
    logs.configure(fmt=options.log_format, level=options.log_level, secrets=secrets)
    try:
        asyncio.run(serve(options))
    except OSError as exc:
        print(
            f"bridge simulator: cannot listen on {options.host}:{options.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
