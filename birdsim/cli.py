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

from birdsim import logs
from birdsim.faults import check_faults
from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    MAX_DELIVERY_ATTEMPTS,
    FaultSettings,
    InvalidSettings,
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


DESCRIPTION = "Simulate Bird's channel connectors and webhook API (see docs/simulator.md)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bridge simulator", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The simulator's options, on its own parser or on ``bridge simulator``'s."""
    d, f = SimulatorSettings(), FaultSettings()
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to bind; 0 picks a free one (default %(default)s)",
    )
    p.add_argument(
        "--access-key",
        action="append",
        dest="access_keys",
        metavar="KEY",
        help=f"accepted key (repeatable; default $BRIDGE_BIRD_ACCESS_KEY or {DEV_ACCESS_KEY})",
    )
    p.add_argument(
        "--organization-id",
        help="the organization "
        f"(default $BRIDGE_BIRD_ORGANIZATION_ID or {DEFAULT_ORGANIZATION_ID})",
    )
    p.add_argument(
        "--workspace-id",
        action="append",
        dest="workspace_ids",
        metavar="UUID",
        help=f"workspace (repeatable; default $BRIDGE_BIRD_WORKSPACE_ID or {DEFAULT_WORKSPACE_ID})",
    )
    p.add_argument(
        "--admin-token",
        help="require `Authorization: Bearer <token>` on /_simulator "
        "(default $BRIDGE_SIMULATOR_ADMIN_TOKEN; none: the control API is open)",
    )
    p.add_argument(
        "--install-delay",
        type=float,
        default=d.install_delay_s,
        metavar="S",
        help="seconds from a connector's create to its channel (default %(default)s)",
    )
    p.add_argument(
        "--activate-delay",
        type=float,
        default=d.activate_delay_s,
        metavar="S",
        help="seconds from a channel's creation to 'active' (default %(default)s)",
    )
    p.add_argument("--allow-http-urls", action="store_true", help="accept http/local hook URLs")
    p.add_argument("--reject-duplicates", action="store_true", help="409 on a repeated connector")
    p.add_argument(
        "--delivery-retry-base",
        type=float,
        default=d.delivery_retry_base_s,
        metavar="S",
        help="first webhook redelivery delay, doubled each time (default %(default)s)",
    )
    p.add_argument(
        "--delivery-retry-cap",
        type=float,
        default=d.delivery_retry_cap_s,
        metavar="S",
        help="longest webhook redelivery delay (default %(default)s)",
    )
    p.add_argument(
        "--delivery-max-attempts",
        type=int,
        default=d.delivery_max_attempts,
        metavar="N",
        help=f"webhook delivery attempts, at most {MAX_DELIVERY_ATTEMPTS} (default %(default)s)",
    )
    p.add_argument(
        "--delivery-timeout",
        type=float,
        default=d.delivery_timeout_s,
        metavar="S",
        help="a webhook delivery not answered within this is retried (default %(default)s)",
    )
    faults = p.add_argument_group("faults (also settable at run time: PUT /_simulator/faults)")
    faults.add_argument(
        "--latency",
        type=float,
        default=f.latency_s,
        metavar="S",
        help="added to every answer (default %(default)s)",
    )
    faults.add_argument(
        "--latency-jitter",
        type=float,
        default=f.latency_jitter_s,
        metavar="S",
        help="random +- on the latency (default %(default)s)",
    )
    faults.add_argument(
        "--error-rate",
        type=float,
        default=f.error_rate,
        metavar="P",
        help="share of requests answered --error-status (default %(default)s)",
    )
    faults.add_argument(
        "--error-status",
        type=int,
        default=f.error_status,
        metavar="CODE",
        help="status of an --error-rate answer (default %(default)s)",
    )
    faults.add_argument(
        "--throttle-rate",
        type=float,
        default=f.throttle_rate,
        metavar="P",
        help="share of requests answered 429 with Retry-After (default %(default)s)",
    )
    faults.add_argument(
        "--throttle-no-retry-after-rate",
        type=float,
        default=f.throttle_no_retry_after_rate,
        metavar="P",
        help="share of requests answered 429 without Retry-After (default %(default)s)",
    )
    faults.add_argument(
        "--retry-after",
        type=int,
        default=f.retry_after_s,
        metavar="S",
        help="the Retry-After of a throttled answer (default %(default)s)",
    )
    faults.add_argument(
        "--timeout-rate",
        type=float,
        default=f.timeout_rate,
        metavar="P",
        help="share of requests that hang --hang seconds, then 504 (default %(default)s)",
    )
    faults.add_argument(
        "--hang",
        type=float,
        default=f.hang_s,
        metavar="S",
        help="how long a timed-out request hangs (default %(default)s)",
    )
    faults.add_argument(
        "--reset-rate",
        type=float,
        default=f.reset_rate,
        metavar="P",
        help="share of connections closed without an answer (default %(default)s)",
    )
    faults.add_argument(
        "--rate-limit-get",
        type=float,
        default=f.rate_limit_get_per_s,
        metavar="PER_S",
        help="GETs per second per workspace, 429 beyond; <= 0 is off (default %(default)s)",
    )
    faults.add_argument(
        "--rate-limit-post",
        type=float,
        default=f.rate_limit_post_per_s,
        metavar="PER_S",
        help="other requests per second per workspace, 429 beyond (default %(default)s)",
    )
    faults.add_argument(
        "--fail-installs", action="store_true", help="every new connector fails to install"
    )
    faults.add_argument(
        "--stuck-installs", action="store_true", help="every new connector stays pending"
    )
    faults.add_argument(
        "--seed", type=int, default=None, help="random seed, for repeatable random faults"
    )
    p.add_argument(
        "--log-format",
        choices=("json", "console"),
        default="console",
        help="log line format (default %(default)s)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="least severe level logged; requests are logged at debug (default %(default)s)",
    )


def parse_options(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    """Flags > environment > defaults; raise ``InvalidSettings`` listing every problem."""
    return options_from_args(build_parser().parse_args(list(argv)), environ)


def options_from_args(a: argparse.Namespace, environ: Mapping[str, str]) -> Options:
    """The options from parsed flags (see ``add_arguments``) and the environment."""
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
        raise InvalidSettings(problems)
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
    return run(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed flags until signalled: 0, 2 for bad options, 1 if it cannot bind."""
    try:
        options = options_from_args(args, os.environ)
    except InvalidSettings as exc:
        for problem in exc.problems:
            print(f"bridge simulator: {problem}", file=sys.stderr)
        return 2
    secrets = [*options.settings.access_keys, options.settings.admin_token or ""]
    logs.configure(fmt=options.log_format, level=options.log_level, secrets=secrets)
    try:
        asyncio.run(serve(options))
    except OSError as exc:
        print(
            f"bridge simulator: cannot listen on {options.host}:{options.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
