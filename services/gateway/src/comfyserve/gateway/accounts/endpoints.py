"""HTTP routes of `/auth` and the JWKS: decode, call AuthService, encode."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.accounts.models import (
    ApiKey,
    ApiKeyList,
    CreateApiKeyRequest,
    CreatedApiKey,
    LogoutRequest,
    Me,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    User,
)
from comfyserve.gateway.accounts.service import AccountsService, me
from comfyserve.gateway.auth.dependencies import (
    Access,
    Caller,
    PublicLimit,
    client_address,
)
from comfyserve.gateway.bodies import NUL
from comfyserve.gateway.errors import InvalidRequestError
from comfyserve.gateway.limits.policy import RouteClass
from comfyserve.gateway.openapi.access_answers import BOOTSTRAP_KEY
from comfyserve.gateway.openapi.answers import BODY_TOO_LARGE, INVALID_REQUEST
from comfyserve.gateway.openapi.responses import (
    calls,
    error_responses,
    guarded,
    limited,
)
from comfyserve.gateway.resources import ResourcesDep

router = APIRouter(tags=["auth"])

SIGN_IN = PublicLimit(RouteClass.AUTH)
JWKS = PublicLimit(RouteClass.READ)
# The caller's own session: any scope will do.
ME = Access(RouteClass.READ, *Scope)
SESSION = Access(RouteClass.MANAGE, *Scope)
KEYS_READ = Access(RouteClass.READ, Scope.KEYS_MANAGE)
KEYS_WRITE = Access(RouteClass.MANAGE, Scope.KEYS_MANAGE)

# Token and key answers hold secrets: never kept by a cache (RFC 6749 5.1).
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _service(request: Request, resources: ResourcesDep) -> AccountsService:
    return AccountsService(resources.auth, client_address(request))


Accounts = Annotated[AccountsService, Depends(_service)]


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=User,
    dependencies=[Depends(SIGN_IN)],
    summary="Register a user",
    description=(
        "Creates a user and its tenant (`tenant_name`, or the e-mail), of which "
        "it is the owner; then sign in with `POST /auth/token`. The password "
        "needs at least 10 characters. Limited per client address."
    ),
    responses=error_responses(
        *limited(SIGN_IN), BODY_TOO_LARGE, INVALID_REQUEST, *calls("register")
    ),
)
async def register(body: RegisterRequest, accounts: Accounts) -> User:
    return await accounts.register(body)


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    dependencies=[Depends(SIGN_IN)],
    summary="Sign in (OAuth2 password grant)",
    description=(
        "A form (`application/x-www-form-urlencoded`) with `username` (the "
        "e-mail), `password` and optionally `scope` (space-separated; empty "
        "asks for every scope the user's role allows). Answers a short-lived "
        "access token (`expires_in` seconds) to send as `Authorization: Bearer` "
        "and a refresh token for `POST /auth/refresh`. A wrong password and an "
        "unknown e-mail answer alike; repeated failures are throttled per "
        "account and per address."
    ),
    responses=error_responses(
        *limited(SIGN_IN), BODY_TOO_LARGE, INVALID_REQUEST, *calls("login")
    ),
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    accounts: Accounts,
    response: Response,
) -> TokenResponse:
    response.headers.update(_NO_STORE)
    for name, value in (("username", form.username), ("password", form.password)):
        if NUL in value:
            raise InvalidRequestError(name, "must not contain a NUL character")
    return await accounts.login(form.username, form.password, form.scopes)


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    dependencies=[Depends(SIGN_IN)],
    summary="Exchange a refresh token for new tokens",
    description=(
        "Answers a new access token and a new refresh token; the one sent stops "
        "working. Sending a used refresh token again ends its whole session."
    ),
    responses=error_responses(
        *limited(SIGN_IN), BODY_TOO_LARGE, INVALID_REQUEST, *calls("refresh")
    ),
)
async def refresh(
    body: RefreshRequest, accounts: Accounts, response: Response
) -> TokenResponse:
    response.headers.update(_NO_STORE)
    return await accounts.refresh(body.refresh_token)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End a session",
    description=(
        "Revokes the session (every refresh token rotated from one sign-in) "
        "that `refresh_token` belongs to, if it is the caller's; the access "
        "token lapses within its lifetime."
    ),
    responses=error_responses(
        *guarded(SESSION),
        BOOTSTRAP_KEY,
        BODY_TOO_LARGE,
        INVALID_REQUEST,
        *calls("logout"),
    ),
)
async def logout(
    body: LogoutRequest,
    caller: Annotated[Caller, Depends(SESSION)],
    accounts: Accounts,
) -> Response:
    await accounts.logout(body.refresh_token, caller.auth_credential())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/auth/me",
    response_model=Me,
    summary="Who is calling",
    description=(
        "The caller as this gateway authenticated it: a user (access token) or "
        "an API key, its tenant and scopes."
    ),
    responses=error_responses(*guarded(ME)),
)
async def whoami(caller: Annotated[Caller, Depends(ME)]) -> Me:
    return me(caller.principal)


@router.post(
    "/auth/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiKey,
    summary="Create an API key",
    description=(
        "A key of the caller's tenant with at most the caller's scopes; its "
        "`secret` (`csk_...`) is in this answer only. Send it as "
        "`Authorization: Bearer`. A revoked key is refused everywhere within "
        "5 seconds."
    ),
    responses=error_responses(
        *guarded(KEYS_WRITE),
        BOOTSTRAP_KEY,
        BODY_TOO_LARGE,
        INVALID_REQUEST,
        *calls("create_api_key"),
    ),
)
async def create_api_key(
    body: CreateApiKeyRequest,
    caller: Annotated[Caller, Depends(KEYS_WRITE)],
    accounts: Accounts,
    response: Response,
) -> CreatedApiKey:
    response.headers.update(_NO_STORE)
    return await accounts.create_key(body, caller.auth_credential())


@router.get(
    "/auth/api-keys",
    response_model=ApiKeyList,
    summary="List the tenant's API keys",
    description="Without secrets; revoked and expired ones with `include_inactive`.",
    responses=error_responses(
        *guarded(KEYS_READ), BOOTSTRAP_KEY, INVALID_REQUEST, *calls("list_api_keys")
    ),
)
async def list_api_keys(
    caller: Annotated[Caller, Depends(KEYS_READ)],
    accounts: Accounts,
    include_inactive: Annotated[bool, Query()] = False,
) -> ApiKeyList:
    return await accounts.keys(include_inactive, caller.auth_credential())


@router.delete(
    "/auth/api-keys/{key_id}",
    response_model=ApiKey,
    summary="Revoke an API key",
    description=(
        "Answers the key with `revoked_at` set; it is refused everywhere within "
        "5 seconds. Another tenant's key answers 404."
    ),
    responses=error_responses(
        *guarded(KEYS_WRITE), BOOTSTRAP_KEY, *calls("revoke_api_key")
    ),
)
async def revoke_api_key(
    key_id: str, caller: Annotated[Caller, Depends(KEYS_WRITE)], accounts: Accounts
) -> ApiKey:
    return await accounts.revoke_key(key_id, caller.auth_credential())


@router.get(
    "/.well-known/jwks.json",
    dependencies=[Depends(JWKS)],
    summary="The public keys access tokens are signed with",
    description=(
        "RFC 7517 JWKS of every Ed25519 (`EdDSA`) key that signs or still "
        "verifies access tokens; a token names its key in `kid`."
    ),
    responses={
        200: {
            "description": "The JWKS.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **error_responses(*limited(JWKS), *calls("get_jwks")),
    },
)
async def jwks(accounts: Accounts) -> Response:
    return Response(
        await accounts.jwks(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=60"},
    )
