"""Password hashing with argon2id (argon2-cffi), off the event loop and a
bounded number at once: each hash holds its memory cost (64 MiB by default)."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from comfyserve.auth.settings import Settings


def hasher_for(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.password_time_cost,
        memory_cost=settings.password_memory_kib,
        parallelism=settings.password_parallelism,
    )


class Passwords:
    def __init__(self, hasher: PasswordHasher, concurrency: int, dummy: str) -> None:
        self._hasher = hasher
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy = dummy

    @classmethod
    async def create(cls, hasher: PasswordHasher, concurrency: int) -> Passwords:
        # Made before the first login, so none pays for it.
        dummy = await asyncio.to_thread(hasher.hash, secrets.token_urlsafe(16))
        return cls(hasher, concurrency, dummy)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`. Without a stored hash (an
        unknown user) a dummy one is verified instead, so both answers take
        the same time."""
        target = self._dummy if stored is None else stored
        async with self._slots:
            matches = await asyncio.to_thread(self._matches, target, password)
        return matches and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """Made with other argon2 parameters than the current ones."""
        return self._hasher.check_needs_rehash(stored)

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
