"""Fixtures shared by every test tree: the local stack and unique names."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """Settings of the running local stack; starts it when it is not up yet.

    `make test` brings the stack up before pytest and stops it afterwards; a test run
    started by hand gets it started here and leaves it running for the next run.
    """
    env_file = ROOT / ".local" / "stack.env"
    status = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "stack.py"), "status"],
        capture_output=True,
        check=False,
    )
    if status.returncode != 0 or not env_file.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "infra" / "stack.py"), "up"], check=True
        )
    settings = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    yield settings
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, schemas, buckets and keys of one test."""
    return uuid.uuid4().hex[:12]
