"""The `/admin` calls: tenants from AuthService joined with their usage from
WorkflowService and StorageService, suspension, quotas, key revocation."""

from __future__ import annotations

import asyncio

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as au
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.gateway.accounts.models import ApiKey
from comfyserve.gateway.accounts.service import api_key
from comfyserve.gateway.adapters.auth import AuthClient
from comfyserve.gateway.adapters.refusals import AS_CALLER, translated
from comfyserve.gateway.adapters.storage import StorageClient
from comfyserve.gateway.adapters.workflow import WorkflowClient
from comfyserve.gateway.admin.models import (
    Quota,
    QuotaRequest,
    Tenant,
    TenantPage,
    TenantWithUsage,
    Usage,
)
from comfyserve.gateway.errors import LimitsUnavailableError
from comfyserve.gateway.limits.gcra import LimitsUnavailable
from comfyserve.gateway.limits.suspensions import Suspensions
from comfyserve.gateway.protos import optional_time


def _tenant(tenant: au.Tenant) -> Tenant:
    return Tenant(
        id=tenant.id,
        name=tenant.name,
        suspended=tenant.suspended,
        created_at=optional_time(tenant, "created_at"),
        users=tenant.users,
        active_keys=tenant.active_keys,
    )


def _quota(quota: wf.TenantQuota) -> Quota:
    return Quota(
        tenant_id=quota.tenant_id,
        max_running=quota.max_running,
        max_queued=quota.max_queued,
        running_is_default=quota.running_is_default,
        queued_is_default=quota.queued_is_default,
    )


class AdminService:
    """`credential` is the administrator's own, for the auth service's calls;
    workflow and storage are called as this gateway."""

    def __init__(
        self,
        auth: AuthClient,
        workflow: WorkflowClient,
        storage: StorageClient,
        suspensions: Suspensions,
    ) -> None:
        self._auth = auth
        self._workflow = workflow
        self._storage = storage
        self._suspensions = suspensions

    async def tenants(
        self, limit: int, cursor: str | None, credential: str
    ) -> TenantPage:
        with translated(AS_CALLER):
            page = await self._auth.list_tenants(
                au.ListTenantsRequest(page_size=limit, cursor=cursor or ""), credential
            )
        if not page.tenants:
            # No ids would ask the services for every tenant's usage.
            return TenantPage(items=[], next_cursor=page.next_cursor or None)
        ids = [tenant.id for tenant in page.tenants]
        jobs, files = await asyncio.gather(
            self._workflow.get_usage(wf.GetUsageRequest(tenant_ids=ids)),
            self._storage.get_storage_usage(st.GetStorageUsageRequest(tenant_ids=ids)),
        )
        job_usage = {entry.tenant_id: entry for entry in jobs.tenants}
        file_usage = {entry.tenant_id: entry for entry in files.tenants}
        items = []
        for tenant in page.tenants:
            ran = job_usage.get(tenant.id, wf.TenantUsage())
            stored = file_usage.get(tenant.id, st.TenantStorage())
            usage = Usage(
                jobs_by_status=dict(ran.jobs_by_status),
                gpu_seconds=ran.gpu_seconds,
                stored_bytes=stored.bytes,
                stored_files=stored.files,
            )
            items.append(TenantWithUsage(**_tenant(tenant).model_dump(), usage=usage))
        return TenantPage(items=items, next_cursor=page.next_cursor or None)

    async def set_suspended(
        self, tenant_id: str, suspended: bool, credential: str
    ) -> Tenant:
        with translated(AS_CALLER):
            tenant = await self._auth.set_tenant_suspended(
                au.SetTenantSuspendedRequest(tenant_id=tenant_id, suspended=suspended),
                credential,
            )
        # After the auth service, which owns it: every gateway refuses the
        # tenant's writes from here on, whatever its callers' tokens say.
        try:
            await self._suspensions.set(tenant.id, suspended)
        except LimitsUnavailable:
            raise LimitsUnavailableError() from None
        return _tenant(tenant)

    async def revoke_key(self, key_id: str, credential: str) -> ApiKey:
        with translated(AS_CALLER):
            key = await self._auth.revoke_api_key(
                au.RevokeApiKeyRequest(key_id=key_id), credential
            )
        return api_key(key)

    async def quota(self, tenant_id: str) -> Quota:
        found = await self._workflow.get_tenant_quota(
            wf.GetTenantQuotaRequest(tenant_id=tenant_id)
        )
        return _quota(found)

    async def set_quota(self, tenant_id: str, body: QuotaRequest) -> Quota:
        request = wf.SetTenantQuotaRequest(tenant_id=tenant_id)
        if body.max_running is not None:
            request.max_running = body.max_running
        if body.max_queued is not None:
            request.max_queued = body.max_queued
        return _quota(await self._workflow.set_tenant_quota(request))
