"""Register and Login over gRPC."""

from __future__ import annotations

from comfyserve.auth.tokens.grpc import token_pair_to_pb
from comfyserve.auth.transport import Context, timestamp
from comfyserve.auth.users.models import User
from comfyserve.auth.users.service import (
    Login,
    LoginService,
    Registration,
    RegistrationService,
)
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb


def user_to_pb(user: User) -> pb.User:
    return pb.User(
        id=str(user.id),
        email=user.email,
        tenant_id=str(user.tenant_id),
        role=user.role.value,
        created_at=timestamp(user.created_at),
    )


class UserRpcs:
    _registrations: RegistrationService
    _logins: LoginService

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.User:
        user = await self._registrations.register(
            Registration(
                email=request.email,
                password=request.password,
                tenant_name=request.tenant_name,
            )
        )
        return user_to_pb(user)

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.TokenPair:
        pair = await self._logins.login(
            Login(
                email=request.email,
                password=request.password,
                client_address=request.client_address,
                scopes=list(request.scopes),
            )
        )
        return token_pair_to_pb(pair)
