"""API keys: made by a tenant's users within their own scopes, listed without
secrets, revoked, and turned back into the principal they stand for."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.auth import permissions
from comfyserve.auth.clock import Clock
from comfyserve.auth.errors import (
    InvalidArgumentError,
    InvalidCredentialError,
    KeyLimitError,
    NotFoundError,
    TenantSuspendedError,
)
from comfyserve.auth.keys import repository
from comfyserve.auth.keys.models import (
    MAX_BURST,
    MAX_LIFETIME_SECONDS,
    MAX_NAME_CHARS,
    MAX_PER_MINUTE,
    ApiKey,
    ApiKeyKind,
    CreatedApiKey,
    NewApiKey,
)
from comfyserve.auth.keys.secret import (
    API_KEY_PREFIX,
    MAX_SECRET_CHARS,
    digest,
    new_secret,
    shown_prefix,
)
from comfyserve.auth.telemetry import Metrics
from comfyserve.auth.tenants import repository as tenants
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.auth import Principal, PrincipalKind
from comfyserve.runtime.database import autocommit

log = structlog.get_logger(__name__)

# A key's last use is written at most this often, so authenticating stays a
# read nearly always.
LAST_USED_RESOLUTION = timedelta(minutes=1)


async def add_tenant_key(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    name: str,
    scopes: frozenset[str],
    created_by: UUID | None,
    now: datetime,
    expires_at: datetime | None = None,
    per_minute: int = 0,
    burst: int = 0,
) -> CreatedApiKey:
    secret = new_secret()
    key = ApiKey(
        id=uuid.uuid4(),
        kind=ApiKeyKind.TENANT,
        tenant_id=tenant_id,
        service_name=None,
        name=name,
        prefix=shown_prefix(secret),
        scopes=scopes,
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
        last_used_at=None,
        revoked_at=None,
        rate_per_minute=per_minute,
        rate_burst=burst,
    )
    await repository.add(conn, key, digest(secret))
    return CreatedApiKey(key, secret)


def _checked(request: NewApiKey) -> NewApiKey:
    name = request.name.strip()
    if not name:
        raise InvalidArgumentError("name", "required")
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidArgumentError(
            "name", f"at most {MAX_NAME_CHARS} printable characters"
        )
    if not request.scopes:
        raise InvalidArgumentError("scopes", "at least one scope is required")
    permissions.parse_scopes(request.scopes)
    lifetime = request.expires_in_seconds
    if lifetime is not None and not 0 < lifetime <= MAX_LIFETIME_SECONDS:
        raise InvalidArgumentError(
            "expires_in_seconds", f"between 1 and {MAX_LIFETIME_SECONDS}"
        )
    if not 0 <= request.per_minute <= MAX_PER_MINUTE:
        raise InvalidArgumentError(
            "rate_limit.per_minute", f"between 0 and {MAX_PER_MINUTE}"
        )
    if not 0 <= request.burst <= MAX_BURST:
        raise InvalidArgumentError("rate_limit.burst", f"between 0 and {MAX_BURST}")
    return NewApiKey(name, request.scopes, lifetime, request.per_minute, request.burst)


def _caller_tenant(caller: Principal) -> UUID:
    # A credential this service issued always names a tenant it made.
    return UUID(caller.tenant_id)


def _key_id(value: str) -> UUID:
    if not value:
        raise InvalidArgumentError("key_id", "required")
    try:
        return UUID(value)
    except ValueError:
        # Ids are opaque: a malformed one is as unknown as a missing one.
        raise NotFoundError("api key", value) from None


class ApiKeyService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_keys_per_tenant: int,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._max_keys = max_keys_per_tenant
        self._metrics = metrics
        self._clock = clock

    async def create(self, caller: Principal, request: NewApiKey) -> CreatedApiKey:
        """A key of the caller's tenant with at most the caller's scopes."""
        permissions.require(caller, Scope.KEYS_MANAGE)
        checked = _checked(request)
        scopes = permissions.within(frozenset(checked.scopes), caller.scopes)
        tenant_id = _caller_tenant(caller)
        now = self._clock()
        async with self._engine.begin() as conn:
            if await tenants.lock_suspended(conn, tenant_id):
                raise TenantSuspendedError()
            if await repository.count_active(conn, tenant_id, now) >= self._max_keys:
                raise KeyLimitError(self._max_keys)
            created = await add_tenant_key(
                conn,
                tenant_id=tenant_id,
                name=checked.name,
                scopes=scopes,
                created_by=UUID(caller.user_id) if caller.user_id else None,
                now=now,
                expires_at=(
                    None
                    if checked.expires_in_seconds is None
                    else now + timedelta(seconds=checked.expires_in_seconds)
                ),
                per_minute=checked.per_minute,
                burst=checked.burst,
            )
        log.info("auth.api_key.created", key_id=str(created.key.id))
        return created

    async def of_tenant(
        self, caller: Principal, include_inactive: bool
    ) -> Sequence[ApiKey]:
        permissions.require(caller, Scope.KEYS_MANAGE)
        async with autocommit(self._engine) as conn:
            return await repository.of_tenant(
                conn,
                _caller_tenant(caller),
                include_inactive=include_inactive,
                now=self._clock(),
            )

    async def revoke(self, caller: Principal, key_id: str) -> ApiKey:
        """Revokes a key of the caller's tenant, or with `admin` any key.
        Another tenant's key is as unknown as a missing one."""
        is_admin = Scope.ADMIN in caller.scopes
        if not is_admin:
            permissions.require(caller, Scope.KEYS_MANAGE)
        identifier = _key_id(key_id)
        async with self._engine.begin() as conn:
            key = await repository.get(conn, identifier)
            if key is None or not (is_admin or str(key.tenant_id) == caller.tenant_id):
                raise NotFoundError("api key", key_id)
            revoked = await repository.revoke(conn, identifier, self._clock())
        log.info("auth.api_key.revoked", key_id=key_id, by=caller.subject)
        return revoked

    async def authenticate(self, secret: str) -> Principal:
        """The principal an API key stands for; `InvalidCredentialError` for
        an unknown, revoked or expired one."""
        if not secret.startswith(API_KEY_PREFIX) or len(secret) > MAX_SECRET_CHARS:
            raise InvalidCredentialError()
        now = self._clock()
        async with self._engine.begin() as conn:
            found = await repository.by_secret(conn, digest(secret))
            if found is None or not found[0].active(now):
                self._metrics.authentications.labels("api_key", "refused").inc()
                raise InvalidCredentialError()
            key, suspended = found
            stale_before = now - LAST_USED_RESOLUTION
            if key.last_used_at is None or key.last_used_at < stale_before:
                await repository.touch(conn, key.id, now, stale_before)
        principal = _principal(key, suspended)
        self._metrics.authentications.labels(principal.kind.value, "ok").inc()
        return principal

    async def put_service_keys(self, credentials: Mapping[str, str]) -> None:
        """The configured service keys, and no others: a service taken out of
        the setting loses its key."""
        now = self._clock()
        async with self._engine.begin() as conn:
            for service, secret in credentials.items():
                await repository.put_service_key(
                    conn,
                    key_id=uuid.uuid4(),
                    service=service,
                    prefix=shown_prefix(secret),
                    secret_hash=digest(secret),
                    now=now,
                )
            dropped = await repository.delete_services_except(conn, list(credentials))
        for service in dropped:
            log.warning("auth.service_key.removed", service=service)
        log.info("auth.service_keys.configured", services=sorted(credentials))


def _principal(key: ApiKey, suspended: bool) -> Principal:
    if key.kind is ApiKeyKind.SERVICE:
        return Principal(
            kind=PrincipalKind.SERVICE,
            subject=f"service:{key.service_name}",
            tenant_id="",
            scopes=key.scopes,
            key_id=str(key.id),
        )
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject=f"key:{key.id}",
        tenant_id=str(key.tenant_id),
        scopes=key.scopes,
        user_id=None if key.created_by is None else str(key.created_by),
        key_id=str(key.id),
        tenant_suspended=suspended,
        rate_limit_per_minute=key.rate_per_minute,
        rate_limit_burst=key.rate_burst,
        expires_at=key.expires_at,
    )
