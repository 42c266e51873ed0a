"""The signing keys: the one that signs (the newest not retired), the ones that
verify (every key not retired), rotation and retirement.

Every answer comes from the database, so a rotation or retirement made by the
command line (another process) counts at once in every running instance; only
decrypted private keys are remembered, by kid, since a kid's key never changes.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.auth.clock import Clock
from comfyserve.auth.db import lock
from comfyserve.auth.errors import LastSigningKeyError, NotFoundError
from comfyserve.auth.signing import repository
from comfyserve.auth.signing.cipher import KeyCipher
from comfyserve.auth.signing.models import SigningKey
from comfyserve.runtime.auth import ACCESS_TOKEN_ALGORITHM
from comfyserve.runtime.database import autocommit

log = structlog.get_logger(__name__)

# Serialises creating, rotating and retiring keys across instances.
_KEYS_LOCK = 0x61757468_6B657973


@dataclass(frozen=True, slots=True)
class Signer:
    kid: str
    key: Ed25519PrivateKey


def jwk(key: SigningKey) -> dict[str, str]:
    """RFC 8037 form of an Ed25519 public key."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(key.public_key).rstrip(b"=").decode(),
        "kid": key.kid,
        "alg": ACCESS_TOKEN_ALGORITHM,
        "use": "sig",
    }


class SigningKeys:
    def __init__(self, engine: AsyncEngine, cipher: KeyCipher, clock: Clock) -> None:
        self._engine = engine
        self._cipher = cipher
        self._clock = clock
        self._private: dict[str, Ed25519PrivateKey] = {}

    async def signer(self) -> Signer:
        """The newest key not retired; made first when there is none, so a new
        deployment can sign from its first login."""
        async with self._engine.begin() as conn:
            kid, blob = await self._newest_or_first(conn)
        return Signer(kid, self._decrypted(kid, blob))

    async def verifying_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key of `kid` while it is not retired."""
        async with autocommit(self._engine) as conn:
            raw = await repository.active_public_key(conn, kid)
        return None if raw is None else Ed25519PublicKey.from_public_bytes(raw)

    async def jwks(self) -> dict[str, Any]:
        async with autocommit(self._engine) as conn:
            keys = await repository.active(conn)
        return {"keys": [jwk(key) for key in keys]}

    async def rotate(self) -> SigningKey:
        """A new key that signs from now on; the others keep verifying."""
        async with self._engine.begin() as conn:
            await lock(conn, _KEYS_LOCK)
            created, _ = await self._add(conn)
        log.info("auth.signing_key.rotated", kid=created.kid)
        return created

    async def retire(self, kid: str) -> SigningKey:
        """Stops `kid` verifying (it leaves the JWKS); retiring a retired key
        changes nothing. The last key not retired stays."""
        async with self._engine.begin() as conn:
            await lock(conn, _KEYS_LOCK)
            key = await repository.get(conn, kid)
            if key is None:
                raise NotFoundError("signing key", kid)
            if key.retired_at is not None:
                return key
            if await repository.count_active(conn) <= 1:
                raise LastSigningKeyError(kid)
            now = self._clock()
            await repository.retire(conn, kid, now)
        log.info("auth.signing_key.retired", kid=kid)
        return SigningKey(key.kid, key.public_key, key.created_at, now)

    async def _newest_or_first(self, conn: AsyncConnection) -> tuple[str, bytes]:
        newest = await repository.newest_active(conn)
        if newest is not None:
            return newest
        await lock(conn, _KEYS_LOCK)
        # Another instance may have made it while this one waited.
        newest = await repository.newest_active(conn)
        if newest is not None:
            return newest
        created, blob = await self._add(conn)
        log.info("auth.signing_key.created", kid=created.kid)
        return created.kid, blob

    async def _add(self, conn: AsyncConnection) -> tuple[SigningKey, bytes]:
        """A new key, and its private half encrypted."""
        now = self._clock()
        kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
        private = Ed25519PrivateKey.generate()
        raw_private = private.private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        blob = self._cipher.encrypt(kid, raw_private)
        key = await repository.add(
            conn,
            kid=kid,
            public_key=private.public_key().public_bytes(
                Encoding.Raw, PublicFormat.Raw
            ),
            private_key=blob,
            created_at=now,
        )
        return key, blob

    def _decrypted(self, kid: str, blob: bytes) -> Ed25519PrivateKey:
        key = self._private.get(kid)
        if key is None:
            raw = self._cipher.decrypt(kid, blob)
            key = Ed25519PrivateKey.from_private_bytes(raw)
            self._private[kid] = key
        return key
