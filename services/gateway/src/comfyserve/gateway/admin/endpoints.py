"""HTTP routes of `/admin` (scope `admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.accounts.models import ApiKey
from comfyserve.gateway.admin.models import (
    MAX_PAGE_SIZE,
    MAX_QUOTA,
    Quota,
    QuotaRequest,
    Tenant,
    TenantPage,
)
from comfyserve.gateway.admin.service import AdminService
from comfyserve.gateway.auth.dependencies import Access, Caller
from comfyserve.gateway.limits.policy import RouteClass
from comfyserve.gateway.openapi.access_answers import BOOTSTRAP_KEY
from comfyserve.gateway.openapi.answers import BODY_TOO_LARGE, INVALID_REQUEST
from comfyserve.gateway.openapi.responses import calls, error_responses, guarded
from comfyserve.gateway.resources import ResourcesDep

router = APIRouter(prefix="/admin", tags=["admin"])

READ = Access(RouteClass.READ, Scope.ADMIN)
WRITE = Access(RouteClass.MANAGE, Scope.ADMIN)
Reader = Annotated[Caller, Depends(READ)]
Writer = Annotated[Caller, Depends(WRITE)]

_BY_AUTH = (
    "The caller must be known to the auth service (an administrator's token "
    "or key), not a bootstrap key."
)


def _service(resources: ResourcesDep) -> AdminService:
    return AdminService(
        resources.auth, resources.workflow, resources.storage, resources.suspensions
    )


Admin = Annotated[AdminService, Depends(_service)]


@router.get(
    "/tenants",
    response_model=TenantPage,
    summary="List tenants with their usage",
    description=(
        "Tenants oldest first, each with its jobs by status, GPU seconds and "
        f"stored bytes and files. `limit` is 1 to {MAX_PAGE_SIZE} (50 by "
        f"default); pass `next_cursor` as `cursor` for the next page. {_BY_AUTH}"
    ),
    responses=error_responses(
        *guarded(READ),
        BOOTSTRAP_KEY,
        INVALID_REQUEST,
        *calls("list_tenants", "get_usage", "get_storage_usage"),
    ),
)
async def list_tenants(
    caller: Reader,
    admin: Admin,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> TenantPage:
    return await admin.tenants(limit, cursor, caller.auth_credential())


@router.post(
    "/tenants/{tenant_id}/suspend",
    response_model=Tenant,
    summary="Suspend a tenant",
    description=(
        "Its writes (submits, cancels, uploads, keys) answer 403 "
        f"`tenant_suspended` at once on every gateway; reads go on. {_BY_AUTH}"
    ),
    responses=error_responses(
        *guarded(WRITE), BOOTSTRAP_KEY, *calls("set_tenant_suspended")
    ),
)
async def suspend_tenant(tenant_id: str, caller: Writer, admin: Admin) -> Tenant:
    return await admin.set_suspended(tenant_id, True, caller.auth_credential())


@router.post(
    "/tenants/{tenant_id}/reinstate",
    response_model=Tenant,
    summary="Reinstate a suspended tenant",
    description=f"Its writes are served again at once. {_BY_AUTH}",
    responses=error_responses(
        *guarded(WRITE), BOOTSTRAP_KEY, *calls("set_tenant_suspended")
    ),
)
async def reinstate_tenant(tenant_id: str, caller: Writer, admin: Admin) -> Tenant:
    return await admin.set_suspended(tenant_id, False, caller.auth_credential())


@router.get(
    "/tenants/{tenant_id}/quota",
    response_model=Quota,
    summary="Get a tenant's quota",
    description="Its limits on running and queued jobs, defaults filled in.",
    responses=error_responses(*guarded(READ), *calls("get_tenant_quota")),
)
async def get_quota(tenant_id: str, caller: Reader, admin: Admin) -> Quota:
    return await admin.quota(tenant_id)


@router.put(
    "/tenants/{tenant_id}/quota",
    response_model=Quota,
    summary="Set a tenant's quota",
    description=(
        f"Each limit is 1 to {MAX_QUOTA}; one left out goes back to the "
        "deployment's default. A submit over `max_queued` answers 429 "
        "`queue_full`; jobs over `max_running` wait their turn."
    ),
    responses=error_responses(
        *guarded(WRITE), BODY_TOO_LARGE, INVALID_REQUEST, *calls("set_tenant_quota")
    ),
)
async def set_quota(
    tenant_id: str, body: QuotaRequest, caller: Writer, admin: Admin
) -> Quota:
    return await admin.set_quota(tenant_id, body)


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKey,
    summary="Revoke any tenant's API key",
    description=(
        "Answers the key with `revoked_at` set; it is refused everywhere within "
        f"5 seconds. {_BY_AUTH}"
    ),
    responses=error_responses(*guarded(WRITE), BOOTSTRAP_KEY, *calls("revoke_api_key")),
)
async def revoke_api_key(key_id: str, caller: Writer, admin: Admin) -> ApiKey:
    return await admin.revoke_key(key_id, caller.auth_credential())
