"""The ``bridge`` command: run | dev | simulator | subscriptions ensure | command |
reconcile | dlq list | dlq redrive.

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
    from bridge.loops import loop_factory
    from bridge.loops import run as run_loop
    from bridge.tracing import tracing_from_env

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
    loop_factory(config.event_loop)  # uvloop missing: said now, once
    # OTEL_* variables: spans exported when an OTLP endpoint is set (docs/tracing.md); each
    # worker process sets up its own exporter (after the fork).
    if config.http_workers == 1:
        run_loop(
            serve(Bridge(config, roles, tracing=tracing_from_env(os.environ))), config.event_loop
        )
        return 0
    from bridge.ports import port_problem
    from bridge.workers import run_workers

    # Checked once here: the workers share the port (SO_REUSEPORT), so each one alone
    # would not see a process of the same user already listening there.
    problem = port_problem(config.http_host, config.http_port)
    if problem:
        raise StartupError(
            f"cannot listen on {config.http_host}:{config.http_port} (BRIDGE_HTTP_PORT): {problem}"
        )

    def serve_one(_index: int) -> int:
        try:
            bridge = Bridge(config, roles, tracing=tracing_from_env(os.environ))
            run_loop(serve(bridge, reuse_port=True), config.event_loop)
        except StartupError as exc:
            print(f"bridge run: {exc.reason}", file=sys.stderr)
            return 1
        return 0

    return run_workers(config.http_workers, serve_one, shutdown_timeout_s=config.shutdown_timeout_s)


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
    from bridge.subscriptions import Report, ensure_every_workspace

    try:
        config = load_config()
        required: list[tuple[str, object]] = [
            ("BRIDGE_WEBHOOK_PUBLIC_URL", config.webhook.public_url)
        ]
        if not config.bird.workspaces_from_file:  # the file holds these per workspace
            required[:0] = [
                ("BRIDGE_BIRD_ACCESS_KEY", config.bird.access_key),
                ("BRIDGE_BIRD_ORGANIZATION_ID", config.bird.organization_id),
                ("BRIDGE_BIRD_WORKSPACE_ID", config.bird.workspace_id),
            ]
        problems = [f"{name}: required" for name, value in required if not value]
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return _fail_config(exc)
    logs.configure(fmt="console", level="warning", secrets=config.secrets())
    _warn_unknown_settings()

    async def ensure() -> list[Report]:
        async with BirdClient(config.bird, Metrics()) as bird:
            return await ensure_every_workspace(config, bird, webhook_path=WEBHOOK_PATH)

    reports = asyncio.run(ensure())
    if not config.bird.workspaces_from_file:
        (report,) = reports
        if report.error is not None:
            where = ""
            if report.error_code == "bird_unavailable":
                where = f" at {config.bird.api_url} (BRIDGE_BIRD_API_URL)"
            raise StartupError(f"{report.error}{where}")
        for line in report.lines:
            print(line)
        return 0
    # Several workspaces: one failing does not stop the others; each gets a summary line.
    for report in reports:
        for line in report.lines:
            print(f"workspace {report.workspace_id}: {line}")
        print(report.summary(), flush=True)
    failed = [report.workspace_id for report in reports if report.error is not None]
    if failed:
        print(
            f"bridge subscriptions ensure: {len(failed)} of {len(reports)} workspaces failed: "
            + ", ".join(failed),
            file=sys.stderr,
        )
        return 1
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


def _kafka_unreachable(config: Config, exc: Exception) -> StartupError:
    return StartupError(
        f"cannot reach Kafka at {config.kafka.bootstrap_servers} "
        f"(BRIDGE_KAFKA_BOOTSTRAP_SERVERS): {exc}"
    )


def cmd_reconcile(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from bridge.bird.client import BirdClient
    from bridge.kafka.publisher import Publisher
    from bridge.kafka.scan import probe
    from bridge.metrics import Metrics
    from bridge.reconcile.runner import Reconciler

    try:
        config = load_config()
        workspaces = list(args.workspace or [])
        if not workspaces:  # every configured workspace
            workspaces = [workspace.id for workspace in config.workspaces]
        problems = []
        if config.bird.access_key is None and not config.bird.workspaces_from_file:
            problems.append("BRIDGE_BIRD_ACCESS_KEY: required")
        if not workspaces:
            problems.append(
                "BRIDGE_BIRD_WORKSPACE_ID or BRIDGE_WORKSPACES_FILE: required (or --workspace)"
            )
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return _fail_config(exc)
    logs.configure(fmt="console", level="warning", secrets=config.secrets())
    _warn_unknown_settings()

    async def run() -> int:
        try:
            await probe(config.kafka)
        except KafkaError as exc:
            raise _kafka_unreachable(config, exc) from exc
        metrics = Metrics()
        publisher = Publisher(config.kafka, metrics)
        await publisher.start()
        try:
            try:
                async with asyncio.timeout(config.kafka.request_timeout_ms / 1000):
                    await publisher.ready.wait()
            except TimeoutError:
                raise _kafka_unreachable(config, TimeoutError("no connection")) from None
            async with BirdClient(config.bird, metrics) as bird:
                summary = await Reconciler(config, bird, publisher, metrics).run(workspaces)
        except KafkaError as exc:
            raise _kafka_unreachable(config, exc) from exc
        finally:
            await publisher.stop(timeout=5.0)
        print(summary.line())
        return 1 if summary.failed else 0

    return asyncio.run(run())


def cmd_dlq(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from bridge.dlq.select import Filters
    from bridge.dlq.tool import list_command, redrive_command
    from bridge.kafka.scan import probe

    try:
        config = load_config()
    except ConfigError as exc:
        return _fail_config(exc)
    logs.configure(fmt="console", level="warning", secrets=config.secrets())
    _warn_unknown_settings()
    filters = Filters(reason=args.reason, source_topic=args.source_topic)

    async def run() -> int:
        try:
            await probe(config.kafka)
            if args.subcommand == "list":
                await list_command(config, filters, args.limit, as_json=args.json, out=sys.stdout)
                return 0
            await redrive_command(
                config,
                filters,
                args.limit,
                dry_run=args.dry_run,
                rate=args.rate,
                max_redrives=args.max_redrives,
                as_json=args.json,
                out=sys.stdout,
            )
            return 0
        except (KafkaError, OSError) as exc:
            raise _kafka_unreachable(config, exc) from exc

    return asyncio.run(run())


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {raw}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {raw}")
    return value


def _add_dlq_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", metavar="TEXT", help="only dead letters whose dlq-reason contains TEXT"
    )
    parser.add_argument(
        "--source-topic", metavar="T", help="only dead letters whose dlq-source-topic is T"
    )
    parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N dead letters (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")


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

    reconcile = sub.add_parser(
        "reconcile",
        help="list every channel at Bird once and publish what the channel state misses",
        description="Reconcile once: list every channel of each workspace at Bird and publish "
        "a channel.created / channel.updated event (birdorigin=reconcile) for each one the "
        "channel state does not know, or knows older. Prints one summary line.",
    )
    reconcile.add_argument(
        "--workspace",
        action="append",
        metavar="ID",
        help="a Bird workspace to reconcile; repeat for several (default: every "
        "configured workspace)",
    )
    reconcile.set_defaults(func=cmd_reconcile)

    dlq = sub.add_parser(
        "dlq",
        help="inspect and redrive dead letters",
        description="Inspect the dead-letter topic and send dead letters back to their "
        "source topic.",
    )
    dlq_sub = dlq.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    dlq_list = dlq_sub.add_parser(
        "list",
        help="one line per dead letter",
        description="Print one line per dead letter (oldest first per partition).",
    )
    _add_dlq_filters(dlq_list)
    dlq_list.set_defaults(func=cmd_dlq)
    redrive = dlq_sub.add_parser(
        "redrive",
        help="send dead letters back to their source topic",
        description="Copy each selected dead letter's key, value and headers back to its "
        "dlq-source-topic, with dlq-redrive-count and dlq-redriven-from. The last line on "
        "stdout is redriven=N skipped=M.",
    )
    _add_dlq_filters(redrive)
    redrive.add_argument(
        "--dry-run", action="store_true", help="write nothing; say what would be redriven"
    )
    redrive.add_argument(
        "--rate",
        type=_positive_float,
        metavar="PER_S",
        help="at most this many records per second (default: as fast as Kafka takes them)",
    )
    redrive.add_argument(
        "--max-redrives",
        type=_positive_int,
        default=3,
        metavar="N",
        help="skip a dead letter already redriven N times (default %(default)s)",
    )
    redrive.set_defaults(func=cmd_dlq)

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
    except ConfigError as exc:
        # A setting found wrong only when a client is built (a TLS file that does not load).
        return _fail_config(exc)
