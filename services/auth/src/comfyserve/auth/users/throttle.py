"""Login throttling per account and per client address.

Every attempt is counted before its password is checked, so parallel guesses
cannot slip past the limit while the first ones are still hashing; a success
takes its attempt back (and clears the account's). A window starts at the
first attempt after the previous window ended. Unknown e-mails are counted
like known ones, so the throttle tells nobody which accounts exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from comfyserve.auth.users import repository


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    window: timedelta
    per_account: int
    per_address: int

    async def admit(
        self, conn: AsyncConnection, email: str, address: str | None, now: datetime
    ) -> int | None:
        """Counts an attempt; the seconds to wait when it is one too many."""
        waits = []
        for key, limit in self._limits(email, address):
            started, attempts = await repository.count_attempt(
                conn, key, now, now - self.window
            )
            if attempts > limit:
                remaining = (started + self.window - now).total_seconds()
                waits.append(max(1, math.ceil(remaining)))
        return max(waits, default=None)

    async def succeeded(
        self, conn: AsyncConnection, email: str, address: str | None
    ) -> None:
        await repository.forget_attempts(conn, _account(email))
        if address is not None:
            await repository.forget_attempt(conn, _address(address))

    def _limits(self, email: str, address: str | None) -> list[tuple[str, int]]:
        limits = [(_account(email), self.per_account)]
        if address is not None:
            limits.append((_address(address), self.per_address))
        return limits


def _account(email: str) -> str:
    return f"account:{email}"


def _address(address: str) -> str:
    return f"address:{address}"
