"""Alembic environment of the storage service (`comfyserve.runtime.migrations`).

`comfyserve.storage.db` passes the schema and a connection (or the URL); run
by the `alembic` command, they come from `STORAGE_DATABASE_URL` and
`STORAGE_SCHEMA`.
"""

from __future__ import annotations

import os

from comfyserve.runtime.migrations import Target, run_env


def _settings() -> Target:
    # The two variables alone, not `Settings()`: serving needs S3 settings that
    # migrating by hand should not have to set.
    return Target(
        url=os.environ["STORAGE_DATABASE_URL"],
        schema=os.environ.get("STORAGE_SCHEMA", "storage"),
    )


run_env(lock="comfyserve.storage.migrations", settings=_settings)
