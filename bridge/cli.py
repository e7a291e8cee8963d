"""The ``bridge`` command: run | dev | simulator | subscriptions ensure | command.

Start-up failures (``ConfigError``, ``StartupError``) become one line on stderr each and a
non-zero exit here, at the edge; never a traceback.

``dev`` and ``simulator`` run the development packages ``bridgedev`` and ``birdsim``, which
the production image does not install; there they fail with one line saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import cast

import structlog

from bridge import config as config_module
from bridge import logs
from bridge.allocator import fix_mmap_threshold
from bridge.config import ROLES, Config, Role
from bridge.errors import ConfigError, StartupError

log = structlog.get_logger("bridge.cli")

# The subcommands that run a development package, and that package.
DEV_TOOLS = {"dev": "bridgedev", "simulator": "birdsim"}
NOT_INSTALLED = (
    "a development tool, not installed here (the production image has only the bridge); "
    "run it from a source checkout after `make install`"
)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _missing_dev_tool(argv: Sequence[str]) -> str | None:
    """The subcommand in ``argv`` if it is a development tool that is not installed."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in DEV_TOOLS and not _installed(DEV_TOOLS[command]):
        return command
    return None


def _roles(name: str) -> list[Role]:
    return list(ROLES) if name == "all" else [cast(Role, name)]


def load_config(environ: dict[str, str] | None = None) -> Config:
    return config_module.load(os.environ if environ is None else environ)


def _fail_config(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"bridge: invalid configuration: {problem}", file=sys.stderr)
    return 2


def _warn_unknown_settings() -> None:
    """Warn about each ``BRIDGE_*`` variable nothing reads (a typo is otherwise silent)."""
    for warning in config_module.unknown_settings(os.environ):
        log.warning(warning)


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.app import Bridge, serve
    from bridge.kafka.clients import common_settings

    roles = _roles(args.role)
    try:
        config = load_config()
        config.require(roles)
        common_settings(config.kafka)  # TLS files load now, not in a background task
    except ConfigError as exc:
        return _fail_config(exc)
    logs.configure(fmt=config.log_format, level=config.log_level, secrets=config.secrets())
    _warn_unknown_settings()
    fix_mmap_threshold()
    asyncio.run(serve(Bridge(config, roles)))
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from birdsim.cli import run as run_simulator

    return run_simulator(args)


def cmd_dev(args: argparse.Namespace) -> int:
    from bridgedev.runner import run_dev
    from bridgedev.terminal import own_foreground

    fix_mmap_threshold()
    with own_foreground():
        return asyncio.run(
            run_dev(
                kafka_port=args.kafka_port,
                port=args.port,
                simulator_port=args.simulator_port,
                warnings=config_module.unknown_settings(os.environ),
            )
        )


def cmd_subscriptions(args: argparse.Namespace) -> int:
    from bridge.app import WEBHOOK_PATH
    from bridge.bird.client import BirdClient
    from bridge.metrics import Metrics
    from bridge.subscriptions import ensure_subscriptions

    try:
        config = load_config()
        problems = [
            f"{name}: required"
            for name, value in (
                ("BRIDGE_BIRD_ACCESS_KEY", config.bird.access_key),
                ("BRIDGE_BIRD_ORGANIZATION_ID", config.bird.organization_id),
                ("BRIDGE_BIRD_WORKSPACE_ID", config.bird.workspace_id),
                ("BRIDGE_WEBHOOK_PUBLIC_URL", config.webhook.public_url),
            )
            if not value
        ]
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return _fail_config(exc)
    logs.configure(fmt="console", level="warning", secrets=config.secrets())
    _warn_unknown_settings()

    async def ensure() -> list[str]:
        async with BirdClient(config.bird, Metrics()) as bird:
            return await ensure_subscriptions(config, bird, webhook_path=WEBHOOK_PATH)

    from bridge.errors import BirdError

    try:
        lines = asyncio.run(ensure())
    except BirdError as exc:
        where = ""
        if exc.code == "bird_unavailable":
            where = f" at {config.bird.api_url} (BRIDGE_BIRD_API_URL)"
        raise StartupError(f"{exc.message}{where}") from exc
    for line in lines:
        print(line)
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    from bridge.command_tool import build_command, send_and_follow
    from bridge.kafka.clients import common_settings

    try:
        config = load_config()
        common_settings(config.kafka)
    except ConfigError as exc:
        return _fail_config(exc)
    arguments: dict[str, str] = {}
    for item in args.arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"bridge command: --arg wants key=value, got {item!r}", file=sys.stderr)
            return 2
        arguments[key] = value
    if args.action in ("delete", "get") and not args.connector_id:
        print(f"bridge command {args.action}: --connector-id is required", file=sys.stderr)
        return 2
    command = build_command(
        args.action,
        command_id=args.command_id,
        workspace_id=args.workspace_id,
        name=args.name,
        template=args.template,
        connector_id=args.connector_id,
        arguments=arguments,
    )
    logs.configure(fmt="console", level="warning", secrets=config.secrets())
    _warn_unknown_settings()
    return asyncio.run(send_and_follow(config, command, timeout=args.timeout))


def _version() -> str:
    try:
        return importlib.metadata.version("channel-bridge")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Channel Bridge: Bird's channel platform <-> Kafka."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the service (configured by BRIDGE_* variables)",
        description="Run the service, configured by BRIDGE_* variables (docs/configuration.md).",
    )
    run.add_argument(
        "--role",
        choices=["all", *ROLES],
        default="all",
        help="what this process does: ingest webhooks, execute commands, or both "
        "(default %(default)s)",
    )
    run.set_defaults(func=cmd_run)

    dev = sub.add_parser(
        "dev",
        help="everything on this machine: embedded Kafka, Bird simulator, the bridge",
        description="Everything on this machine, loopback only: the embedded Kafka broker, "
        "the Bird API simulator and the bridge (both roles). Ctrl-C stops it all.",
    )
    dev.add_argument(
        "--kafka-port",
        type=int,
        default=9092,
        help="the embedded Kafka broker's port (default %(default)s)",
    )
    dev.add_argument(
        "--port", type=int, default=8080, help="the bridge's HTTP port (default %(default)s)"
    )
    dev.add_argument(
        "--simulator-port",
        type=int,
        default=8081,
        help="the Bird API simulator's port (default %(default)s)",
    )
    dev.set_defaults(func=cmd_dev)

    subs = sub.add_parser(
        "subscriptions",
        help="Bird webhook subscriptions",
        description="Manage Bird webhook subscriptions for the configured workspace.",
    )
    subs_sub = subs.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    ensure = subs_sub.add_parser(
        "ensure",
        help="create/update the channel.created and channel.updated subscriptions",
        description="Create or update the channel.created and channel.updated subscriptions "
        "at Bird (BRIDGE_BIRD_* and BRIDGE_WEBHOOK_PUBLIC_URL), then exit.",
    )
    ensure.set_defaults(func=cmd_subscriptions)

    command = sub.add_parser(
        "command",
        help="send one connector command to Kafka and follow its results",
        description="Send one connector command to Kafka (BRIDGE_KAFKA_*) and print its "
        "results until the final one; a tool for people, services use Kafka.",
    )
    command.add_argument(
        "action", choices=["create", "delete", "get", "list"], help="what to ask Bird to do"
    )
    command.add_argument("--name", help="create: the connector name")
    command.add_argument("--template", help="create: connectorTemplateRef; list: templateRef")
    command.add_argument("--arg", action="append", metavar="KEY=VALUE", help="create: arguments")
    command.add_argument("--connector-id", help="delete / get: the connector")
    command.add_argument("--workspace-id", help="default: BRIDGE_BIRD_WORKSPACE_ID at the bridge")
    command.add_argument("--command-id", help="default: a new one")
    command.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="give up when no final result came within this (default %(default)s)",
    )
    command.set_defaults(func=cmd_command)

    if _installed("birdsim"):
        from birdsim import cli as simulator_cli

        sim = sub.add_parser(
            "simulator",
            help="run the Bird API simulator alone",
            description=simulator_cli.DESCRIPTION,
        )
        simulator_cli.add_arguments(sim)
    else:
        sim = sub.add_parser("simulator", help="the Bird API simulator (not installed here)")
    sim.set_defaults(func=cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    missing = _missing_dev_tool(argv)
    if missing:
        print(f"bridge {missing}: {NOT_INSTALLED}", file=sys.stderr)
        return 1
    args = build_parser().parse_args(argv)
    name = " ".join(filter(None, ("bridge", args.command, getattr(args, "subcommand", None))))
    try:
        return int(args.func(args))
    except StartupError as exc:
        print(f"{name}: {exc.reason}", file=sys.stderr)
        return 1
