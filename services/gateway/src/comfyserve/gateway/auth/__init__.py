"""Who is calling: principals, the authenticators that produce them, and scopes."""

from comfyserve.gateway.auth.dependencies import CurrentPrincipal, require_scope
from comfyserve.gateway.auth.principal import (
    Authenticator,
    Principal,
    Scope,
    StaticKeyAuthenticator,
    tenant_id_for_key,
)

__all__ = [
    "Authenticator",
    "CurrentPrincipal",
    "Principal",
    "Scope",
    "StaticKeyAuthenticator",
    "require_scope",
    "tenant_id_for_key",
]
