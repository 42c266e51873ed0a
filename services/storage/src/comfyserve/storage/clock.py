"""The service's clock: passed to each service, so tests can choose the instant."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
