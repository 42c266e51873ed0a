"""Principals and where they come from.

Routes only ever see a `Principal`; the auth service will bring another
`Authenticator` (JWTs and stored API keys) without touching them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr


class Scope(StrEnum):
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    subject: str
    scopes: frozenset[Scope]


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None when it is not valid."""
        ...


def tenant_id_for_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class StaticKeyAuthenticator:
    """Accepts the configured API keys; each key is a tenant of its own."""

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
            tenant_id=tenant_id, subject=f"key:{tenant_id}", scopes=frozenset(Scope)
        )

    async def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        # Every key is compared, so the time taken does not tell which matched.
        for key_digest, principal in self._principals:
            if hmac.compare_digest(digest, key_digest):
                found = principal
        return found
