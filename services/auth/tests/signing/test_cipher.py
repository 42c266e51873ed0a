"""Private keys at rest: they open with the secret and the kid they were
sealed with, and with nothing else."""

import pytest

from comfyserve.auth.errors import UndecryptableKeyError
from comfyserve.auth.signing.cipher import KeyCipher


def test_a_sealed_key_opens_with_its_secret_and_kid():
    cipher = KeyCipher("a" * 32)
    sealed = cipher.encrypt("kid-1", b"private bytes")
    assert b"private bytes" not in sealed
    assert cipher.decrypt("kid-1", sealed) == b"private bytes"
    # A fresh nonce every time.
    assert cipher.encrypt("kid-1", b"private bytes") != sealed


def test_another_secret_or_kid_does_not_open_it():
    sealed = KeyCipher("a" * 32).encrypt("kid-1", b"private bytes")
    with pytest.raises(UndecryptableKeyError, match="AUTH_KEY_ENCRYPTION_SECRET"):
        KeyCipher("b" * 32).decrypt("kid-1", sealed)
    with pytest.raises(UndecryptableKeyError):
        KeyCipher("a" * 32).decrypt("kid-2", sealed)
