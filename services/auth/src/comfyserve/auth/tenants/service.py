"""Tenant administration: listing every tenant, suspending and reinstating."""

from __future__ import annotations

from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.auth import permissions
from comfyserve.auth.clock import Clock
from comfyserve.auth.errors import InvalidArgumentError, NotFoundError
from comfyserve.auth.tenants import cursor, repository
from comfyserve.auth.tenants.models import Tenant, TenantPage
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.auth import Principal
from comfyserve.runtime.database import autocommit

log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def _tenant_id(value: str) -> UUID:
    if not value:
        raise InvalidArgumentError("tenant_id", "required")
    try:
        return UUID(value)
    except ValueError:
        raise NotFoundError("tenant", value) from None


class TenantAdmin:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def page(self, caller: Principal, page_size: int, after: str) -> TenantPage:
        """Tenants oldest first; a page size above the most is the most."""
        permissions.require(caller, Scope.ADMIN)
        if page_size < 0:
            raise InvalidArgumentError("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        position = cursor.decode(after) if after else None
        async with autocommit(self._engine) as conn:
            found = await repository.page(
                conn, after=position, limit=size + 1, now=self._clock()
            )
        shown = list(found[:size])
        last = shown[-1] if len(found) > size else None
        return TenantPage(
            tenants=shown,
            next_cursor=None
            if last is None
            else cursor.encode(last.created_at, last.id),
        )

    async def set_suspended(
        self, caller: Principal, tenant_id: str, suspended: bool
    ) -> Tenant:
        permissions.require(caller, Scope.ADMIN)
        identifier = _tenant_id(tenant_id)
        async with self._engine.begin() as conn:
            await repository.set_suspended(conn, identifier, suspended)
            tenant = await repository.get(conn, identifier, self._clock())
        if tenant is None:
            raise NotFoundError("tenant", tenant_id)
        log.info(
            "auth.tenant.suspended" if suspended else "auth.tenant.reinstated",
            tenant_id=tenant_id,
            by=caller.subject,
        )
        return tenant
