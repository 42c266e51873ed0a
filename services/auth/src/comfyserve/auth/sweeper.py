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
from comfyserve.runtime.tasks import Loop, every

log = structlog.get_logger(__name__)


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
        async with self._engine.begin() as conn:
            dropped_tokens = await tokens.delete_expired(conn, now)
            dropped_attempts = await users.delete_stale_attempts(
                conn, now - self._login_window
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
