"""Authenticate and GetMe over gRPC."""

from __future__ import annotations

from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.transport import Context, caller, timestamp
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.runtime.auth import Principal, PrincipalKind

_KINDS = {
    PrincipalKind.USER: pb.PRINCIPAL_KIND_USER,
    PrincipalKind.API_KEY: pb.PRINCIPAL_KIND_API_KEY,
    PrincipalKind.SERVICE: pb.PRINCIPAL_KIND_SERVICE,
}


def principal_to_pb(principal: Principal) -> pb.Principal:
    message = pb.Principal(
        kind=_KINDS[principal.kind],
        subject=principal.subject,
        tenant_id=principal.tenant_id,
        scopes=sorted(principal.scopes),
        user_id=principal.user_id or "",
        email=principal.email or "",
        role=principal.role or "",
        key_id=principal.key_id or "",
        rate_limit=pb.RateLimit(
            per_minute=principal.rate_limit_per_minute,
            burst=principal.rate_limit_burst,
        ),
        tenant_suspended=principal.tenant_suspended,
    )
    if principal.expires_at is not None:
        message.expires_at.CopyFrom(timestamp(principal.expires_at))
    return message


class CredentialRpcs:
    _credentials: CredentialService

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: Context
    ) -> pb.Principal:
        principal = await self._credentials.authenticate(request.credential)
        return principal_to_pb(principal)

    async def GetMe(self, request: pb.GetMeRequest, context: Context) -> pb.Principal:
        return principal_to_pb(await caller(context, self._credentials))
