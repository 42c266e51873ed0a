"""`AuthService` over gRPC: one servicer made of each feature's calls. Errors
are answered by the runtime's interceptor, each as its class in `errors.py`
says."""

from __future__ import annotations

from dataclasses import dataclass

from comfyserve.auth.credentials.grpc import CredentialRpcs
from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.keys.grpc import KeyRpcs
from comfyserve.auth.keys.service import ApiKeyService
from comfyserve.auth.signing.grpc import SigningRpcs
from comfyserve.auth.signing.service import SigningKeys
from comfyserve.auth.tenants.grpc import TenantRpcs
from comfyserve.auth.tenants.service import TenantAdmin
from comfyserve.auth.tokens.grpc import TokenRpcs
from comfyserve.auth.tokens.service import TokenService
from comfyserve.auth.users.grpc import UserRpcs
from comfyserve.auth.users.service import LoginService, RegistrationService
from comfyserve.contracts.pb.auth.v1 import auth_pb2_grpc


@dataclass(frozen=True, slots=True)
class AuthApis:
    """The services behind `AuthService`."""

    credentials: CredentialService
    signing: SigningKeys
    registrations: RegistrationService
    logins: LoginService
    tokens: TokenService
    keys: ApiKeyService
    tenants: TenantAdmin


class AuthServicer(
    CredentialRpcs,
    SigningRpcs,
    UserRpcs,
    TokenRpcs,
    KeyRpcs,
    TenantRpcs,
    auth_pb2_grpc.AuthServiceServicer,
):
    def __init__(self, apis: AuthApis) -> None:
        self._credentials = apis.credentials
        self._signing = apis.signing
        self._registrations = apis.registrations
        self._logins = apis.logins
        self._tokens = apis.tokens
        self._keys = apis.keys
        self._tenants = apis.tenants
