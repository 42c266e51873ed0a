"""Alembic environment of the workflow service (`comfyserve.runtime.migrations`).

`comfyserve.workflow.migrate` passes the URL and schema; run by the `alembic`
command they come from the `WORKFLOW_*` settings.
"""

from __future__ import annotations

from comfyserve.runtime.migrations import Target, run_env
from comfyserve.workflow.settings import Settings


def _settings() -> Target:
    settings = Settings()
    return Target(url=settings.database_url, schema=settings.schema_)


run_env(lock="comfyserve.workflow.migrations", settings=_settings)
