"""Alembic environment of the notifier service (`comfyserve.runtime.migrations`).

`comfyserve.notifier.db` passes the schema and a connection (or the URL); run
by the `alembic` command, they come from `NOTIFIER_DATABASE_URL` and
`NOTIFIER_SCHEMA`.
"""

from __future__ import annotations

import os

from comfyserve.runtime.migrations import Target, run_env


def _settings() -> Target:
    # The two variables alone, as every service's env.py reads them.
    return Target(
        url=os.environ["NOTIFIER_DATABASE_URL"],
        schema=os.environ.get("NOTIFIER_SCHEMA", "notifier"),
    )


run_env(lock="comfyserve.notifier.migrations", settings=_settings)
