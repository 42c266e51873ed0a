"""Hashing and checking passwords, and the dummy check for unknown users."""

from argon2 import PasswordHasher

from comfyserve.auth.users.passwords import Passwords

from ..conftest import RecordingHasher

FAST = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}


async def test_a_hash_verifies_its_password_only():
    passwords = await Passwords.create(PasswordHasher(**FAST), 2)
    stored = await passwords.hash("a long password")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "a long password")
    assert not await passwords.verify(stored, "another password")
    assert not await passwords.verify("not a hash", "a long password")


async def test_without_a_stored_hash_the_dummy_is_verified_and_refused():
    hasher = RecordingHasher(**FAST)
    passwords = await Passwords.create(hasher, 1)
    assert not await passwords.verify(None, "any password at all")
    [dummy] = hasher.verified
    assert dummy.startswith("$argon2id$v=19$m=8192,t=1,p=1$")


async def test_hashes_of_other_parameters_need_a_rehash():
    passwords = await Passwords.create(PasswordHasher(**FAST), 1)
    older = PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)
    assert passwords.needs_rehash(older.hash("a long password"))
    assert not passwords.needs_rehash(await passwords.hash("a long password"))
