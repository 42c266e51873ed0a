"""What a bearer credential stands for: an access token, checked against this
service's own keys, or an API key, looked up by its digest."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.auth.errors import InvalidCredentialError
from comfyserve.auth.keys.service import ApiKeyService
from comfyserve.auth.telemetry import Metrics
from comfyserve.auth.tenants import repository as tenants
from comfyserve.auth.tokens.access import AccessTokens
from comfyserve.runtime.auth import Principal, looks_like_token
from comfyserve.runtime.database import autocommit

# Far longer than any token or key this service issues; refused unread.
_MAX_CREDENTIAL_CHARS = 8192


class CredentialService:
    def __init__(
        self,
        engine: AsyncEngine,
        access: AccessTokens,
        keys: ApiKeyService,
        metrics: Metrics,
    ) -> None:
        self._engine = engine
        self._access = access
        self._keys = keys
        self._metrics = metrics

    async def authenticate(self, credential: str) -> Principal:
        """The principal, with its tenant's suspension as it is now; one
        `InvalidCredentialError` for every refusal."""
        if not credential or len(credential) > _MAX_CREDENTIAL_CHARS:
            raise InvalidCredentialError()
        if looks_like_token(credential):
            return await self._token(credential)
        return await self._keys.authenticate(credential)

    async def _token(self, token: str) -> Principal:
        refused = self._metrics.authentications.labels("token", "refused")
        try:
            principal = await self._access.verify(token)
            tenant_id = UUID(principal.tenant_id)
        except (InvalidCredentialError, ValueError):
            refused.inc()
            raise InvalidCredentialError() from None
        async with autocommit(self._engine) as conn:
            suspended = await tenants.suspended(conn, tenant_id)
        if suspended is None:
            refused.inc()
            raise InvalidCredentialError()
        self._metrics.authentications.labels("token", "ok").inc()
        return replace(principal, tenant_suspended=suspended)
