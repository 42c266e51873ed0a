"""Sessions: the token pair a login starts, refresh rotation with reuse
detection, and logout.

A refresh token is opaque (`csr_` and 256 random bits) and stored as SHA-256;
every refresh marks it used and issues the next one in the same family. A used
token presented again means it was copied: the whole family is revoked, so
neither the thief nor the user can go on with it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.auth.addresses import client_address
from comfyserve.auth.clock import Clock
from comfyserve.auth.errors import InvalidArgumentError, InvalidCredentialError
from comfyserve.auth.permissions import scopes_for
from comfyserve.auth.telemetry import Metrics
from comfyserve.auth.tokens import repository
from comfyserve.auth.tokens.access import AccessTokens
from comfyserve.auth.tokens.models import (
    REFRESH_TOKEN_PREFIX,
    PresentedToken,
    TokenPair,
)
from comfyserve.auth.users import repository as users
from comfyserve.auth.users.models import User
from comfyserve.runtime.auth import Principal

log = structlog.get_logger(__name__)

_MAX_TOKEN_CHARS = 256


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _presented(token: str) -> bytes:
    if not token.startswith(REFRESH_TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
        raise InvalidCredentialError()
    return _digest(token)


class TokenService:
    def __init__(
        self,
        engine: AsyncEngine,
        access: AccessTokens,
        *,
        refresh_lifetime: timedelta,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._access = access
        self._refresh_lifetime = refresh_lifetime
        self._metrics = metrics
        self._clock = clock

    async def start(
        self,
        conn: AsyncConnection,
        user: User,
        scopes: frozenset[str],
        address: str | None,
    ) -> TokenPair:
        """A new session (family) for `user`, in the caller's transaction."""
        family_id = uuid.uuid4()
        await repository.add_family(
            conn, family_id=family_id, user_id=user.id, scopes=scopes, now=self._clock()
        )
        return await self._pair(conn, family_id, user, scopes, address)

    async def refresh(self, token: str, address: str) -> TokenPair:
        if not token:
            raise InvalidArgumentError("refresh_token", "required")
        issued_to = client_address(address)
        token_hash = _presented(token)
        now = self._clock()
        async with self._engine.begin() as conn:
            presented = await repository.lock_presented(conn, token_hash)
            if (
                presented is None
                or presented.family_revoked_at is not None
                or presented.expires_at <= now
            ):
                raise InvalidCredentialError()
            if presented.used_at is None:
                return await self._rotate(conn, presented, issued_to, now)
            # Committed with the block: the refusal below must not undo it.
            await repository.revoke_family(conn, presented.family_id, now)
        self._metrics.refresh_reuse.inc()
        log.warning(
            "auth.refresh.reuse_detected",
            family_id=str(presented.family_id),
            user_id=str(presented.user_id),
        )
        raise InvalidCredentialError()

    async def logout(self, caller: Principal, token: str) -> None:
        """Ends the caller's session that `token` belongs to. A token that is
        not the caller's, or not a token at all, changes nothing and is not
        an error (as in RFC 7009): the answer tells nothing about it."""
        if not token:
            raise InvalidArgumentError("refresh_token", "required")
        if caller.user_id is None or not token.startswith(REFRESH_TOKEN_PREFIX):
            return
        async with self._engine.begin() as conn:
            family = await repository.family_of(conn, _digest(token))
            if family is not None and str(family[1]) == caller.user_id:
                await repository.revoke_family(conn, family[0], self._clock())
                log.info("auth.logout", family_id=str(family[0]))

    async def _rotate(
        self,
        conn: AsyncConnection,
        presented: PresentedToken,
        address: str | None,
        now: datetime,
    ) -> TokenPair:
        user = await users.get(conn, presented.user_id)
        if user is None:
            raise InvalidCredentialError()
        await repository.mark_used(conn, presented.token_id, now)
        # A role changed since login narrows the session at once.
        scopes = presented.scopes & scopes_for(user.role, is_admin=user.is_admin)
        return await self._pair(conn, presented.family_id, user, scopes, address)

    async def _pair(
        self,
        conn: AsyncConnection,
        family_id: UUID,
        user: User,
        scopes: frozenset[str],
        address: str | None,
    ) -> TokenPair:
        refresh_token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        await repository.add_token(
            conn,
            token_id=uuid.uuid4(),
            family_id=family_id,
            token_hash=_digest(refresh_token),
            client_address=address,
            now=now,
            expires_at=now + self._refresh_lifetime,
        )
        return TokenPair(
            access_token=await self._access.issue(user, scopes),
            refresh_token=refresh_token,
            expires_in=int(self._access.lifetime.total_seconds()),
            scopes=scopes,
        )
