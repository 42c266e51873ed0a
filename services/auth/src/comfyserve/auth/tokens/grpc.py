"""Refresh and Logout over gRPC."""

from __future__ import annotations

from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.tokens.models import TokenPair
from comfyserve.auth.tokens.service import TokenService
from comfyserve.auth.transport import Context, caller
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb


def token_pair_to_pb(pair: TokenPair) -> pb.TokenPair:
    return pb.TokenPair(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type="bearer",
        expires_in=pair.expires_in,
        scopes=sorted(pair.scopes),
    )


class TokenRpcs:
    _credentials: CredentialService
    _tokens: TokenService

    async def Refresh(
        self, request: pb.RefreshRequest, context: Context
    ) -> pb.TokenPair:
        pair = await self._tokens.refresh(request.refresh_token, request.client_address)
        return token_pair_to_pb(pair)

    async def Logout(
        self, request: pb.LogoutRequest, context: Context
    ) -> pb.LogoutResponse:
        await self._tokens.logout(
            await caller(context, self._credentials), request.refresh_token
        )
        return pb.LogoutResponse()
