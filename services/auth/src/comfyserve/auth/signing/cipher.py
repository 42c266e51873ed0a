"""Encryption at rest of the signing keys' private halves.

AES-256-GCM under a key derived (HKDF-SHA256) from `AUTH_KEY_ENCRYPTION_SECRET`,
with the key's `kid` as associated data, so a ciphertext moved to another row
does not decrypt.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from comfyserve.auth.errors import UndecryptableKeyError

_INFO = b"comfyserve-auth signing keys v1"
_NONCE_BYTES = 12


class KeyCipher:
    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    def encrypt(self, kid: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, kid.encode())

    def decrypt(self, kid: str, blob: bytes) -> bytes:
        nonce, ciphertext = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, kid.encode())
        except InvalidTag:
            raise UndecryptableKeyError(kid) from None
