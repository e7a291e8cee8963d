"""The ``bridge`` command: run | dev | simulator | subscriptions ensure."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import cast

from bridge import config as config_module
from bridge import logs
from bridge.config import ROLES, Config, Role
from bridge.errors import ConfigError


def _roles(name: str) -> list[Role]:
    return list(ROLES) if name == "all" else [cast(Role, name)]


def load_config(environ: dict[str, str] | None = None) -> Config:
    return config_module.load(os.environ if environ is None else environ)


def _fail_config(exc: ConfigError) -> int:
    print(f"bridge: {exc}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.app import Bridge, serve

    roles = _roles(args.role)
    try:
        config = load_config()
        config.require(roles)
    except ConfigError as exc:
        return _fail_config(exc)
    logs.configure(fmt=config.log_format, level=config.log_level, secrets=config.secrets())
    asyncio.run(serve(Bridge(config, roles)))
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from bridge.simulator.cli import main as simulator_main

    return int(simulator_main(list(args.simulator_args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Channel Bridge: Bird's channel platform <-> Kafka."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (configured by BRIDGE_* variables)")
    run.add_argument("--role", choices=["all", *ROLES], default="all")
    run.set_defaults(func=cmd_run)

    sim = sub.add_parser("simulator", help="run the Bird API simulator alone", add_help=False)
    sim.add_argument("simulator_args", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
