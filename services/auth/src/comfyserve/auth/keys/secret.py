"""API key secrets: `csk_` and 256 random bits, stored as SHA-256.

A fast hash is right here, unlike for passwords: a secret this random cannot
be guessed, however fast each guess, and authenticating a key has to be cheap.
"""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "csk_"
# What stays visible of a key in listings: enough to tell keys apart.
_SHOWN_CHARS = len(API_KEY_PREFIX) + 8
# Longer than any key this service makes; checked before hashing.
MAX_SECRET_CHARS = 256


def new_secret() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def shown_prefix(secret: str) -> str:
    return secret[:_SHOWN_CHARS]
