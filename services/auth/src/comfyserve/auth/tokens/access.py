"""Access tokens: EdDSA JWTs signed with the current signing key, and their
verification against the keys not retired, the way `runtime.auth.TokenVerifier`
verifies them in every other service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from comfyserve.auth.clock import Clock
from comfyserve.auth.errors import InvalidCredentialError
from comfyserve.auth.signing.service import SigningKeys
from comfyserve.auth.users.models import User
from comfyserve.contracts.scopes import TokenClaim
from comfyserve.runtime.auth import ACCESS_TOKEN_ALGORITHM, Principal, PrincipalKind

_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
# As TokenVerifier allows: instances' clocks differ a little.
_LEEWAY_SECONDS = 5.0
_USER_SUBJECT = "user:"


class AccessTokens:
    def __init__(
        self,
        keys: SigningKeys,
        *,
        issuer: str,
        audience: str,
        lifetime: timedelta,
        clock: Clock,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self.lifetime = lifetime
        self._clock = clock

    async def issue(self, user: User, scopes: frozenset[str]) -> str:
        signer = await self._keys.signer()
        now = self._clock()
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user.subject,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
            TokenClaim.TENANT: str(user.tenant_id),
            TokenClaim.SCOPES: sorted(scopes),
            TokenClaim.ROLE: user.role.value,
            TokenClaim.EMAIL: user.email,
        }
        return jwt.encode(
            claims,
            signer.key,
            algorithm=ACCESS_TOKEN_ALGORITHM,
            headers={"kid": signer.kid},
        )

    async def verify(self, token: str) -> Principal:
        """The user a token stands for; `InvalidCredentialError` for anything
        but a current token signed by a key not retired."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidCredentialError() from None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != ACCESS_TOKEN_ALGORITHM:
            raise InvalidCredentialError()
        key = await self._keys.verifying_key(kid)
        if key is None:
            raise InvalidCredentialError()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ACCESS_TOKEN_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError:
            raise InvalidCredentialError() from None
        return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    subject, tenant = claims["sub"], claims.get(TokenClaim.TENANT)
    scopes, role = claims.get(TokenClaim.SCOPES), claims.get(TokenClaim.ROLE)
    email = claims.get(TokenClaim.EMAIL)
    if (
        not isinstance(subject, str)
        or not subject.startswith(_USER_SUBJECT)
        or not isinstance(tenant, str)
        or not isinstance(scopes, list)
        or not all(isinstance(scope, str) for scope in scopes)
    ):
        raise InvalidCredentialError()
    return Principal(
        kind=PrincipalKind.USER,
        subject=subject,
        tenant_id=tenant,
        scopes=frozenset(scopes),
        user_id=subject.removeprefix(_USER_SUBJECT),
        email=email if isinstance(email, str) else None,
        role=role if isinstance(role, str) else None,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
