"""`python -m comfyserve.workflow [serve|migrate]`."""

from __future__ import annotations

from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from comfyserve.runtime.entrypoint import serve_or_migrate
from comfyserve.workflow.app import run_app
from comfyserve.workflow.migrate import upgrade_async
from comfyserve.workflow.settings import Settings


async def migrate(settings: Settings) -> str:
    await upgrade_async(settings)
    return settings.schema_


def main() -> None:
    serve_or_migrate(
        "workflow",
        Settings,
        running=run_app,
        migrate=migrate,
        migrate_before_running=True,
        instrumentors=[SQLAlchemyInstrumentor()],
    )


if __name__ == "__main__":
    main()
