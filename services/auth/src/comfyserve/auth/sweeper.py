"""Forgets what has stopped mattering: refresh tokens past their expiry (and
sessions left without one) and login attempts of windows that ended."""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.auth.clock import Clock
from comfyserve.auth.tokens import repository as tokens
from comfyserve.auth.users import repository as users
from comfyserve.runtime.database import delete_in_batches
from comfyserve.runtime.tasks import Loop, every

log = structlog.get_logger(__name__)

# A bounded statement at a time, at most so many a pass: a backlog (sessions
# of a burst of logins expiring together) goes over passes, never as one long
# delete.
_BATCH = 5000
_ROUNDS = 10


class Sweeper:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        login_window: timedelta,
        interval_s: float,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._login_window = login_window
        self._interval_s = interval_s
        self._clock = clock

    async def sweep(self) -> None:
        now = self._clock()
        dropped_tokens = await delete_in_batches(
            self._engine,
            lambda conn, limit: tokens.delete_expired(conn, now, limit),
            batch=_BATCH,
            rounds=_ROUNDS,
        )
        dropped_attempts = await delete_in_batches(
            self._engine,
            lambda conn, limit: users.delete_stale_attempts(
                conn, now - self._login_window, limit
            ),
            batch=_BATCH,
            rounds=_ROUNDS,
        )
        if dropped_tokens or dropped_attempts:
            log.info(
                "auth.sweep",
                refresh_tokens=dropped_tokens,
                login_windows=dropped_attempts,
            )

    def loop(self) -> Loop:
        """`sweep` every interval, for `supervised`."""
        return every(
            self._interval_s,
            self.sweep,
            failed="auth.sweep.failed",
            outages=(SQLAlchemyError, OSError),
        )
