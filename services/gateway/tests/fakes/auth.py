"""AuthService in memory, and the verdict of its verifier on credentials."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as au
from comfyserve.contracts.scopes import ALL_SCOPES
from comfyserve.contracts.scopes import Scope as ApiScope
from comfyserve.runtime.auth import (
    AuthUnavailable,
    Principal,
    PrincipalKind,
    Unauthenticated,
)

from .rpc import cursor_start, make_rpc_error, timestamp

# Credentials the auth service knows (the fake verifier's).
USER_TOKEN = "user.access.token"
ADMIN_TOKEN = "admin.access.token"
USER_KEY = "csk_user_key"
# A key whose principal holds no scope, as the auth service may issue.
KEY_NO_SCOPES = "csk_no_scopes"
# A credential the auth service cannot be asked about.
KEY_AUTH_DOWN = "csk_auth_down"
USER_TENANT = "7a1e0c4e-0000-4000-8000-00000000000a"
ADMIN_TENANT = "7a1e0c4e-0000-4000-8000-00000000000b"


class FakeVerifier:
    """The auth service's verdict on credentials: those in `principals`."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals
        self.verified: list[str] = []

    async def verify(self, credential: str) -> Principal:
        self.verified.append(credential)
        if credential == KEY_AUTH_DOWN:
            raise AuthUnavailable("UNAVAILABLE")
        try:
            return self.principals[credential]
        except KeyError:
            raise Unauthenticated("unknown") from None


def user_principal(
    credential: str,
    tenant_id: str,
    scopes: frozenset[str],
    kind: PrincipalKind = PrincipalKind.USER,
) -> Principal:
    return Principal(
        kind=kind,
        subject=f"{kind.value}:{credential[:8]}",
        tenant_id=tenant_id,
        scopes=scopes,
        user_id=f"u-{tenant_id[-2:]}",
        email=f"{tenant_id[-2:]}@example.com",
        role="owner",
    )


def known_principals() -> dict[str, Principal]:
    """What the fake auth service knows: a user, its key, an administrator."""
    owner = frozenset(ALL_SCOPES - {ApiScope.ADMIN})
    return {
        USER_TOKEN: user_principal(USER_TOKEN, USER_TENANT, owner),
        USER_KEY: user_principal(USER_KEY, USER_TENANT, owner, PrincipalKind.API_KEY),
        ADMIN_TOKEN: user_principal(ADMIN_TOKEN, ADMIN_TENANT, frozenset(ALL_SCOPES)),
        KEY_NO_SCOPES: user_principal(
            KEY_NO_SCOPES, USER_TENANT, frozenset(), PrincipalKind.API_KEY
        ),
    }


class FakeAuth:
    """AuthService in memory: users and their sessions, API keys, tenants.

    Credentials are checked against `principals`, which the fake verifier
    shares: a key made here authenticates at once.
    """

    MAX_KEYS = 3

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals
        self.passwords: dict[str, str] = {}
        self.sessions: dict[str, tuple[str, bool]] = {}
        self.revoked_sessions: set[str] = set()
        self.keys: dict[str, au.ApiKey] = {}
        self.tenants: dict[str, au.Tenant] = {
            tenant: au.Tenant(id=tenant, name=name, users=1)
            for tenant, name in ((USER_TENANT, "users"), (ADMIN_TENANT, "admins"))
        }
        self.throttled: set[str] = set()
        self.requests: list[object] = []
        self.credentials: list[str] = []
        self.failures: dict[str, BaseException] = {}
        self.calls: list[str] = []
        self.jwks_json = '{"keys": []}'

    def _enter(self, method: str, request: object, credential: str | None = None):
        self.calls.append(method)
        self.requests.append(request)
        if method in self.failures:
            raise self.failures[method]
        if credential is None:
            return None
        self.credentials.append(credential)
        principal = self.principals.get(credential)
        if principal is None:
            raise make_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "a valid credential")
        return principal

    @staticmethod
    def _admin(principal: Principal) -> None:
        if ApiScope.ADMIN not in principal.scopes:
            raise make_rpc_error(
                grpc.StatusCode.PERMISSION_DENIED, "missing scope: admin"
            )

    async def register(self, request: au.RegisterRequest) -> au.User:
        self._enter("register", request)
        if len(request.password) < 10:
            raise make_rpc_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                "password: at least 10 characters are required",
                {"password": "at least 10 characters are required"},
            )
        if request.email in self.passwords:
            raise make_rpc_error(grpc.StatusCode.ALREADY_EXISTS, "email: taken")
        self.passwords[request.email] = request.password
        tenant = str(uuid.uuid4())
        self.tenants[tenant] = au.Tenant(
            id=tenant, name=request.tenant_name or request.email, users=1
        )
        return au.User(
            id=str(uuid.uuid4()),
            email=request.email,
            tenant_id=tenant,
            role="owner",
            created_at=timestamp(datetime(2030, 1, 1, tzinfo=UTC)),
        )

    def session(self, email: str) -> str:
        """A refresh token of a new session, as a sign-in would make it."""
        return self._pair(email).refresh_token

    def add_key(self, tenant_id: str) -> au.ApiKey:
        """A key of the tenant, as if made earlier."""
        key = au.ApiKey(
            id=str(uuid.uuid4()), name="earlier", prefix="csk_abcd", tenant_id=tenant_id
        )
        self.keys[key.id] = key
        return key

    def _pair(self, email: str) -> au.TokenPair:
        refresh = f"rt_{uuid.uuid4().hex}"
        self.sessions[refresh] = (email, False)
        return au.TokenPair(
            access_token=USER_TOKEN,
            refresh_token=refresh,
            token_type="bearer",
            expires_in=900,
        )

    async def login(self, request: au.LoginRequest) -> au.TokenPair:
        self._enter("login", request)
        if request.email in self.throttled:
            raise make_rpc_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many failed sign-ins (retry_after_seconds=42)",
                reason="too_many_attempts",
                retry_after_s=42,
            )
        if self.passwords.get(request.email) != request.password:
            raise make_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "invalid login")
        return self._pair(request.email)

    async def refresh(self, request: au.RefreshRequest) -> au.TokenPair:
        self._enter("refresh", request)
        known = self.sessions.get(request.refresh_token)
        if known is None or known[1] or request.refresh_token in self.revoked_sessions:
            raise make_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "a valid credential")
        self.sessions[request.refresh_token] = (known[0], True)
        return self._pair(known[0])

    async def get_jwks(self) -> au.Jwks:
        self._enter("get_jwks", None)
        return au.Jwks(jwks_json=self.jwks_json)

    async def logout(
        self, request: au.LogoutRequest, credential: str
    ) -> au.LogoutResponse:
        self._enter("logout", request, credential)
        self.revoked_sessions.add(request.refresh_token)
        return au.LogoutResponse()

    async def create_api_key(
        self, request: au.CreateApiKeyRequest, credential: str
    ) -> au.CreatedApiKey:
        caller = self._enter("create_api_key", request, credential)
        beyond = sorted(set(request.scopes) - caller.scopes)
        if beyond:
            raise make_rpc_error(
                grpc.StatusCode.PERMISSION_DENIED, f"missing scope: {beyond[0]}"
            )
        active = [k for k in self.keys.values() if k.tenant_id == caller.tenant_id]
        if len(active) >= self.MAX_KEYS:
            raise make_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many keys")
        secret = f"csk_{uuid.uuid4().hex}"
        key = au.ApiKey(
            id=str(uuid.uuid4()),
            name=request.name,
            prefix=secret[:8],
            tenant_id=caller.tenant_id,
            scopes=list(request.scopes),
            created_at=timestamp(datetime(2030, 1, 1, tzinfo=UTC)),
            rate_limit=request.rate_limit,
            created_by=caller.user_id or "",
        )
        if request.HasField("expires_in_seconds"):
            key.expires_at.CopyFrom(timestamp(datetime(2031, 1, 1, tzinfo=UTC)))
        self.keys[key.id] = key
        self.principals[secret] = Principal(
            kind=PrincipalKind.API_KEY,
            subject=f"key:{key.id}",
            tenant_id=caller.tenant_id,
            scopes=frozenset(request.scopes),
            key_id=key.id,
            rate_limit_per_minute=request.rate_limit.per_minute,
            rate_limit_burst=request.rate_limit.burst,
        )
        return au.CreatedApiKey(key=key, secret=secret)

    async def list_api_keys(
        self, request: au.ListApiKeysRequest, credential: str
    ) -> au.ListApiKeysResponse:
        caller = self._enter("list_api_keys", request, credential)
        return au.ListApiKeysResponse(
            keys=[
                key
                for key in self.keys.values()
                if key.tenant_id == caller.tenant_id
                and (request.include_inactive or not key.HasField("revoked_at"))
            ]
        )

    async def revoke_api_key(
        self, request: au.RevokeApiKeyRequest, credential: str
    ) -> au.ApiKey:
        caller = self._enter("revoke_api_key", request, credential)
        key = self.keys.get(request.key_id)
        mine = key is not None and key.tenant_id == caller.tenant_id
        if key is None or not (mine or ApiScope.ADMIN in caller.scopes):
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "api key not found")
        key.revoked_at.CopyFrom(timestamp(datetime(2030, 1, 2, tzinfo=UTC)))
        return key

    async def list_tenants(
        self, request: au.ListTenantsRequest, credential: str
    ) -> au.ListTenantsResponse:
        self._admin(self._enter("list_tenants", request, credential))
        ordered = sorted(self.tenants.values(), key=lambda tenant: tenant.id)
        start = cursor_start(request.cursor)
        size = request.page_size or 50
        more = start + size < len(ordered)
        return au.ListTenantsResponse(
            tenants=ordered[start : start + size],
            next_cursor=str(start + size) if more else "",
        )

    async def set_tenant_suspended(
        self, request: au.SetTenantSuspendedRequest, credential: str
    ) -> au.Tenant:
        self._admin(self._enter("set_tenant_suspended", request, credential))
        tenant = self.tenants.get(request.tenant_id)
        if tenant is None:
            raise make_rpc_error(grpc.StatusCode.NOT_FOUND, "tenant not found")
        tenant.suspended = request.suspended
        return tenant
