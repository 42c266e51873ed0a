"""Alembic environment of the auth service (`comfyserve.runtime.migrations`).

`comfyserve.auth.migrate` passes the URL and schema; run by the `alembic`
command they come from the `AUTH_*` settings.
"""

from __future__ import annotations

from comfyserve.auth.settings import Settings
from comfyserve.runtime.migrations import Target, run_env


def _settings() -> Target:
    settings = Settings()
    return Target(url=settings.database_url, schema=settings.schema_)


run_env(lock="comfyserve.auth.migrations", settings=_settings)
