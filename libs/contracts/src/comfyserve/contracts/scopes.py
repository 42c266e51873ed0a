"""What a principal may do: the scopes every service checks, and the claims of
an access token."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_SCOPES", "SERVICE_SCOPE", "WRITE_SCOPES", "Scope", "TokenClaim"]


class Scope(StrEnum):
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_WRITE = "workflows:write"
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    KEYS_MANAGE = "keys:manage"
    # A tenant's webhook endpoints, signing secret and delivery log.
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)

# What a suspended tenant may no longer do.
WRITE_SCOPES: frozenset[str] = frozenset(
    {Scope.WORKFLOWS_WRITE, Scope.FILES_WRITE, Scope.KEYS_MANAGE, Scope.WEBHOOKS_WRITE}
)

SERVICE_SCOPE = "service"
"""Held only by this product's own services: they act for any tenant, which the
request names (the gateway, having authenticated its caller; the executor)."""


class TokenClaim(StrEnum):
    """Claims of an access token beyond the registered ones (`iss`, `aud`,
    `exp`, `iat`, `nbf`, `jti`, `sub`)."""

    TENANT = "tenant"
    SCOPES = "scopes"
    ROLE = "role"
    EMAIL = "email"
