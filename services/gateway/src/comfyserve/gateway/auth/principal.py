"""Principals and where they come from: this deployment's bootstrap keys, then
the auth service's access tokens and API keys.

Routes only ever see a runtime `Principal`, whichever credential made it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Protocol

from pydantic import SecretStr

from comfyserve.contracts.scopes import ALL_SCOPES
from comfyserve.runtime.auth import Principal, PrincipalKind, Unauthenticated

_BOOTSTRAP = "bootstrap:"


class Verifier(Protocol):
    async def verify(self, credential: str) -> Principal:
        """The principal of an access token or API key; raises `Unauthenticated`
        when it is not valid, `AuthUnavailable` when it cannot be checked."""
        ...


def tenant_id_for_key(key: str) -> str:
    """A bootstrap key's tenant; the same derivation as before the auth
    service, so those tenants keep their jobs and files."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def is_bootstrap(principal: Principal) -> bool:
    return principal.subject.startswith(_BOOTSTRAP)


class BootstrapKeys:
    """The keys in `GATEWAY_API_KEYS`: each a tenant of its own with every
    scope, known to this gateway only."""

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        # Only digests are kept: comparing fixed-length digests in constant time
        # reveals neither a key nor its length.
        self._principals = [
            (
                hashlib.sha256(key.get_secret_value().encode()).digest(),
                self._principal(key.get_secret_value()),
            )
            for key in keys
        ]

    @staticmethod
    def _principal(key: str) -> Principal:
        tenant_id = tenant_id_for_key(key)
        return Principal(
            kind=PrincipalKind.API_KEY,
            subject=f"{_BOOTSTRAP}{tenant_id}",
            tenant_id=tenant_id,
            scopes=frozenset(ALL_SCOPES),
        )

    def find(self, credential: str) -> Principal | None:
        digest = hashlib.sha256(credential.encode()).digest()
        found: Principal | None = None
        # Every key is compared, so the time taken does not tell which matched.
        for key_digest, principal in self._principals:
            if hmac.compare_digest(digest, key_digest):
                found = principal
        return found


class Authenticator:
    """A bearer credential to the principal it stands for."""

    def __init__(self, bootstrap: BootstrapKeys, verifier: Verifier) -> None:
        self._bootstrap = bootstrap
        self._verifier = verifier

    async def authenticate(self, credential: str) -> Principal:
        """Raises `Unauthenticated` for any credential that is not valid here
        (our own services' keys included: they are not for the public API),
        `AuthUnavailable` when the auth service cannot be asked."""
        principal = self._bootstrap.find(credential)
        if principal is None:
            principal = await self._verifier.verify(credential)
        if principal.is_service or not principal.tenant_id:
            raise Unauthenticated("a service credential")
        return principal
