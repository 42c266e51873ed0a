"""Turning a bearer credential into a principal, the same way in every service.

Access tokens are JWTs signed by the auth service (EdDSA, with a `kid`): they are
verified here, locally, against the auth service's JWKS, cached and fetched again
when an unknown `kid` shows up (a rotation). The algorithm is pinned and `exp`,
`iat`, `nbf`, `iss`, `aud`, `sub` and `jti` are required. Anything else is an API
key, which only the auth service can check: its answers are cached for a few
seconds, so a revoked key is refused everywhere within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import grpc
import jwt

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as auth_pb
from comfyserve.contracts.pb.auth.v1 import auth_pb2_grpc as auth_grpc
from comfyserve.contracts.scopes import SERVICE_SCOPE, TokenClaim

__all__ = [
    "ACCESS_TOKEN_ALGORITHM",
    "AuthUnavailable",
    "CredentialVerifier",
    "GrpcAuth",
    "JwksCache",
    "KeyCache",
    "Principal",
    "PrincipalKind",
    "TokenVerifier",
    "Unauthenticated",
    "credential_verifier",
    "looks_like_token",
    "principal_from_pb",
]

ACCESS_TOKEN_ALGORITHM = "EdDSA"
_REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti")


class Unauthenticated(Exception):
    """The credential is missing, malformed, expired, revoked or unknown. Callers
    answer all of these the same way, so none tells an attacker which it was."""


class AuthUnavailable(Exception):
    """The auth service could not be asked; the caller may retry."""


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    subject: str
    tenant_id: str
    scopes: frozenset[str]
    user_id: str | None = None
    key_id: str | None = None
    email: str | None = None
    role: str | None = None
    tenant_suspended: bool = False
    rate_limit_per_minute: int = 0
    rate_limit_burst: int = 0
    expires_at: datetime | None = None

    @property
    def is_service(self) -> bool:
        return self.kind is PrincipalKind.SERVICE and SERVICE_SCOPE in self.scopes

    def missing(self, scopes: Iterable[str]) -> list[str]:
        """The scopes of `scopes` this principal lacks."""
        return sorted(set(scopes) - self.scopes)


def looks_like_token(credential: str) -> bool:
    """A JWT is three base64url parts; an API key (`csk_...`) has no dots."""
    return credential.count(".") == 2


@dataclass
class JwksCache:
    """The auth service's signing keys, fetched on first use, again when a
    token names a key not seen yet (at most every `refetch_s` seconds), and at
    least every `max_age_s` seconds, so a retired key stops verifying."""

    fetch: Callable[[], Awaitable[str]]
    refetch_s: float = 1.0
    max_age_s: float = 300.0
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    _fetched_at: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, kid: str) -> jwt.PyJWK:
        stale = (
            self._fetched_at is None
            or time.monotonic() - self._fetched_at >= self.max_age_s
        )
        if stale or kid not in self._keys:
            await self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            raise Unauthenticated("unknown signing key") from None

    def trusts(self, kid: str) -> bool:
        """Whether `kid` is known and the keys are fresh, without fetching."""
        fresh = (
            self._fetched_at is not None
            and time.monotonic() - self._fetched_at < self.max_age_s
        )
        return fresh and kid in self._keys

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._fetched_at is not None and now - self._fetched_at < self.refetch_s:
                return
            self._fetched_at = now
            document = json.loads(await self.fetch())
            keys: dict[str, jwt.PyJWK] = {}
            for raw in document.get("keys", []):
                kid = raw.get("kid")
                if isinstance(kid, str) and raw.get("alg") == ACCESS_TOKEN_ALGORITHM:
                    keys[kid] = jwt.PyJWK(raw)
            self._keys = keys


@dataclass(frozen=True)
class TokenVerifier:
    """Verifies access tokens locally against the JWKS.

    A token is the same bytes on every request of a session, so what one
    verification found is remembered until the token expires, its key stops
    being trusted, or room runs out: a repeat costs a lookup, not a signature.
    """

    jwks: JwksCache
    issuer: str
    audience: str
    leeway_s: float = 5.0
    max_entries: int = 10_000
    _verified: dict[str, tuple[str, Principal]] = field(default_factory=dict)

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            kid, principal = known
            expires_at = principal.expires_at
            if expires_at is not None and _utcnow() < expires_at:
                if self.jwks.trusts(kid):
                    return principal
            del self._verified[token]
        kid, principal = await self._verify(token)
        if len(self._verified) >= self.max_entries:
            # The oldest entry goes: dicts keep insertion order.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (kid, principal)
        return principal

    async def _verify(self, token: str) -> tuple[str, Principal]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != ACCESS_TOKEN_ALGORITHM:
            raise Unauthenticated("token not signed by this product")
        key = await self.jwks.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ACCESS_TOKEN_ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(_REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        return kid, _principal_of(claims)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _principal_of(claims: dict[str, Any]) -> Principal:
    tenant = claims.get(TokenClaim.TENANT)
    scopes = claims.get(TokenClaim.SCOPES)
    email = claims.get(TokenClaim.EMAIL)
    role = claims.get(TokenClaim.ROLE)
    subject = str(claims["sub"])
    if not isinstance(tenant, str) or not tenant or not isinstance(scopes, list):
        raise Unauthenticated("token without tenant or scopes")
    if not all(isinstance(v, str | None) for v in (email, role)):
        raise Unauthenticated("token with claims of the wrong type")
    try:
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (OverflowError, OSError, ValueError):
        # PyJWT checks only that exp is a number in the future.
        raise Unauthenticated("token expiry out of range") from None
    return Principal(
        kind=PrincipalKind.USER,
        subject=subject,
        tenant_id=tenant,
        scopes=frozenset(str(scope) for scope in scopes),
        user_id=subject.removeprefix("user:"),
        email=email,
        role=role,
        expires_at=expires_at,
    )


@dataclass
class KeyCache:
    """API keys as the auth service answers for them, remembered `ttl_s`
    seconds (refusals are not remembered: a key made a moment ago works)."""

    lookup: Callable[[str], Awaitable[Principal]]
    ttl_s: float = 4.0
    max_entries: int = 10_000
    _known: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    async def verify(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and now - known[0] < self.ttl_s:
            principal = known[1]
        else:
            principal = await self.lookup(key)
            if len(self._known) >= self.max_entries:
                self._known.clear()
            self._known[digest] = (now, principal)
        if principal.expires_at is not None and principal.expires_at <= _utcnow():
            # An expiry inside the cache's lifetime counts at once.
            self._known.pop(digest, None)
            raise Unauthenticated("expired key")
        return principal


@dataclass(frozen=True)
class CredentialVerifier:
    """An access token or an API key to a principal; raises `Unauthenticated`."""

    tokens: TokenVerifier
    keys: KeyCache

    async def verify(self, credential: str) -> Principal:
        if not credential:
            raise Unauthenticated("no credential")
        if looks_like_token(credential):
            return await self.tokens.verify(credential)
        return await self.keys.verify(credential)


_KINDS = {
    auth_pb.PRINCIPAL_KIND_USER: PrincipalKind.USER,
    auth_pb.PRINCIPAL_KIND_API_KEY: PrincipalKind.API_KEY,
    auth_pb.PRINCIPAL_KIND_SERVICE: PrincipalKind.SERVICE,
}


def principal_from_pb(message: auth_pb.Principal) -> Principal:
    return Principal(
        kind=_KINDS.get(message.kind, PrincipalKind.API_KEY),
        subject=message.subject,
        tenant_id=message.tenant_id,
        scopes=frozenset(message.scopes),
        user_id=message.user_id or None,
        key_id=message.key_id or None,
        email=message.email or None,
        role=message.role or None,
        tenant_suspended=message.tenant_suspended,
        rate_limit_per_minute=message.rate_limit.per_minute,
        rate_limit_burst=message.rate_limit.burst,
        expires_at=(
            message.expires_at.ToDatetime(tzinfo=UTC)
            if message.HasField("expires_at")
            else None
        ),
    )


class GrpcAuth:
    """The auth service, as every other service asks it about credentials."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 5.0) -> None:
        self._stub = auth_grpc.AuthServiceStub(channel)
        self._timeout_s = timeout_s

    async def authenticate(self, credential: str) -> Principal:
        try:
            answer = await self._stub.Authenticate(
                auth_pb.AuthenticateRequest(credential=credential),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated("refused by the auth service") from None
            raise AuthUnavailable(error.code().name) from error
        return principal_from_pb(answer)

    async def jwks(self) -> str:
        try:
            answer = await self._stub.GetJwks(
                auth_pb.GetJwksRequest(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as error:
            raise AuthUnavailable(error.code().name) from error
        return answer.jwks_json


def credential_verifier(
    auth: GrpcAuth,
    *,
    issuer: str,
    audience: str,
    key_ttl_s: float = 4.0,
    jwks_max_age_s: float = 300.0,
) -> CredentialVerifier:
    """Tokens checked here against the auth service's keys, API keys by it."""
    jwks = JwksCache(auth.jwks, max_age_s=jwks_max_age_s)
    return CredentialVerifier(
        tokens=TokenVerifier(jwks, issuer=issuer, audience=audience),
        keys=KeyCache(auth.authenticate, ttl_s=key_ttl_s),
    )
