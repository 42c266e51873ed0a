"""Request and response bodies of the `/auth` routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from comfyserve.contracts.scopes import Scope
from comfyserve.gateway.bodies import RequestBody

# The auth service's own bounds, so no value it would take is refused here.
MAX_KEY_NAME_CHARS = 100
MAX_KEY_LIFETIME_SECONDS = 10 * 365 * 24 * 3600
MAX_KEY_PER_MINUTE = 1_000_000
MAX_KEY_BURST = 100_000


class RegisterRequest(RequestBody):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)
    tenant_name: str | None = Field(
        default=None,
        max_length=100,
        description="The organisation to create; the e-mail when omitted.",
    )


class User(BaseModel):
    id: str
    email: str
    tenant_id: str
    role: str
    created_at: datetime | None


class RefreshRequest(RequestBody):
    refresh_token: str = Field(max_length=1024)


class LogoutRequest(RequestBody):
    refresh_token: str = Field(
        max_length=1024, description="The refresh token of the session to end."
    )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = Field(description='Always `"bearer"`.')
    expires_in: int = Field(description="Seconds the access token is valid for.")


class Me(BaseModel):
    """The caller, as this gateway authenticated it."""

    kind: str = Field(description="`user` or `api_key`.")
    subject: str
    tenant_id: str
    scopes: list[str]
    user_id: str | None
    email: str | None
    role: str | None
    key_id: str | None
    expires_at: datetime | None


class RateLimit(RequestBody):
    per_minute: int = Field(
        default=0, ge=0, le=MAX_KEY_PER_MINUTE, description="0: the default."
    )
    burst: int = Field(default=0, ge=0, le=MAX_KEY_BURST, description="0: the default.")


class CreateApiKeyRequest(RequestBody):
    name: str = Field(min_length=1, max_length=MAX_KEY_NAME_CHARS)
    scopes: list[Scope] = Field(
        min_length=1, description="At most the caller's own scopes."
    )
    expires_in_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_KEY_LIFETIME_SECONDS,
        description="Omitted: the key does not expire.",
    )
    rate_limit: RateLimit | None = Field(
        default=None, description="This key's own rate limits, for every class."
    )


class ApiKey(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The secret's recognisable start.")
    tenant_id: str
    scopes: list[str]
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    rate_limit: RateLimit
    created_by: str | None


class CreatedApiKey(ApiKey):
    secret: str = Field(description="The key itself, shown in this answer only.")


class ApiKeyList(BaseModel):
    items: list[ApiKey]
