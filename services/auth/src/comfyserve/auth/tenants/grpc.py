"""ListTenants and SetTenantSuspended over gRPC (admin calls)."""

from __future__ import annotations

from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.tenants.models import Tenant
from comfyserve.auth.tenants.service import TenantAdmin
from comfyserve.auth.transport import Context, caller, timestamp
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb


def tenant_to_pb(tenant: Tenant) -> pb.Tenant:
    return pb.Tenant(
        id=str(tenant.id),
        name=tenant.name,
        suspended=tenant.suspended,
        created_at=timestamp(tenant.created_at),
        users=tenant.users,
        active_keys=tenant.active_keys,
    )


class TenantRpcs:
    _credentials: CredentialService
    _tenants: TenantAdmin

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: Context
    ) -> pb.ListTenantsResponse:
        page = await self._tenants.page(
            await caller(context, self._credentials), request.page_size, request.cursor
        )
        return pb.ListTenantsResponse(
            tenants=[tenant_to_pb(tenant) for tenant in page.tenants],
            next_cursor=page.next_cursor or "",
        )

    async def SetTenantSuspended(
        self, request: pb.SetTenantSuspendedRequest, context: Context
    ) -> pb.Tenant:
        tenant = await self._tenants.set_suspended(
            await caller(context, self._credentials),
            request.tenant_id,
            request.suspended,
        )
        return tenant_to_pb(tenant)
