"""Register and Login over gRPC."""

from __future__ import annotations

from comfyserve.auth.errors import TooManyAttemptsError
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

# Trailing metadata of a throttled login: the seconds to wait.
RETRY_AFTER_TRAILER = "retry_after_seconds"


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
        try:
            pair = await self._logins.login(
                Login(
                    email=request.email,
                    password=request.password,
                    client_address=request.client_address,
                    scopes=list(request.scopes),
                )
            )
        except TooManyAttemptsError as error:
            # The interceptor answers the error (rpc_status); the wait travels
            # beside it, for callers that set Retry-After from it.
            context.set_trailing_metadata(
                ((RETRY_AFTER_TRAILER, str(error.retry_after_seconds)),)
            )
            raise
        return token_pair_to_pb(pair)
