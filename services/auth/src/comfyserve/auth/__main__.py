"""`python -m comfyserve.auth [serve|migrate|rotate-keys|retire-key <kid>|bootstrap]`.

`serve` (the default) migrates, then serves until SIGTERM or SIGINT. Every
other command migrates, does its one thing, writes its answer as one JSON
line on stdout and its logs on stderr, and exits 1 when it was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from comfyserve.auth.app import database, passwords, run_app, signing_keys
from comfyserve.auth.bootstrap import bootstrap
from comfyserve.auth.clock import system_clock
from comfyserve.auth.errors import AuthError
from comfyserve.auth.migrate import upgrade_async
from comfyserve.auth.settings import Settings
from comfyserve.runtime.entrypoint import serve_until_stopped
from comfyserve.runtime.logging import configure_logging
from comfyserve.runtime.telemetry import configure_tracing

log = structlog.get_logger(__name__)

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


async def serve(settings: Settings) -> None:
    await upgrade_async(settings)
    await serve_until_stopped("auth", lambda: run_app(settings))


async def migrate(settings: Settings, _args: argparse.Namespace) -> dict[str, Any]:
    await upgrade_async(settings)
    return {"schema": settings.schema_}


async def rotate_keys(settings: Settings, _args: argparse.Namespace) -> dict[str, Any]:
    await upgrade_async(settings)
    async with database(settings) as engine:
        key = await signing_keys(engine, settings, system_clock).rotate()
    return {"kid": key.kid, "created_at": key.created_at.isoformat()}


async def retire_key(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    await upgrade_async(settings)
    async with database(settings) as engine:
        key = await signing_keys(engine, settings, system_clock).retire(args.kid)
    retired_at = key.retired_at
    return {"kid": key.kid, "retired_at": retired_at and retired_at.isoformat()}


async def bootstrap_admin(
    settings: Settings, _args: argparse.Namespace
) -> dict[str, Any]:
    await upgrade_async(settings)
    password = settings.bootstrap_admin_password
    async with database(settings) as engine:
        done = await bootstrap(
            engine,
            await passwords(settings, None),
            email=settings.bootstrap_admin_email,
            password=None if password is None else password.get_secret_value(),
            clock=system_clock,
        )
    return done.to_json()


COMMANDS: dict[str, Command] = {
    "migrate": migrate,
    "rotate-keys": rotate_keys,
    "retire-key": retire_key,
    "bootstrap": bootstrap_admin,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comfyserve.auth")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="migrate, then serve gRPC and metrics")
    commands.add_parser("migrate", help="apply the migrations only")
    commands.add_parser("rotate-keys", help="add a signing key that signs from now")
    retire = commands.add_parser(
        "retire-key", help="stop a signing key verifying (it leaves the JWKS)"
    )
    retire.add_argument("kid")
    commands.add_parser("bootstrap", help="create the admin user and its API key, once")
    return parser


def main() -> None:
    args = _parser().parse_args()
    settings = Settings()
    command = args.command or "serve"
    if command == "serve":
        configure_logging(settings.log_level)
        configure_tracing("auth", [SQLAlchemyInstrumentor()])
        asyncio.run(serve(settings))
        return
    answer_to = sys.stdout
    # Logs of a one-off command go to stderr, so stdout carries its answer only.
    with contextlib.redirect_stdout(sys.stderr):
        configure_logging(settings.log_level)
        try:
            answer = asyncio.run(COMMANDS[command](settings, args))
        except AuthError as error:
            log.error("auth.command.refused", command=command, reason=error.message)
            raise SystemExit(1) from None
    answer_to.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
