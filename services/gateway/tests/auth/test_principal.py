import hashlib

from pydantic import SecretStr

from comfyserve.gateway.auth import Scope, StaticKeyAuthenticator, tenant_id_for_key


def test_tenant_id_is_the_first_16_hex_digits_of_the_keys_sha256():
    assert tenant_id_for_key("abc") == hashlib.sha256(b"abc").hexdigest()[:16]


async def test_each_key_is_its_own_tenant_with_every_scope():
    authenticator = StaticKeyAuthenticator([SecretStr("one"), SecretStr("two")])

    first = await authenticator.authenticate("one")
    second = await authenticator.authenticate("two")

    assert first is not None
    assert second is not None
    assert first.tenant_id == tenant_id_for_key("one")
    assert second.tenant_id == tenant_id_for_key("two")
    assert first.scopes == frozenset(Scope)
    assert "one" not in first.subject


async def test_unknown_and_prefix_keys_are_refused():
    authenticator = StaticKeyAuthenticator([SecretStr("secret-key")])

    assert await authenticator.authenticate("secret") is None
    assert await authenticator.authenticate("secret-key-") is None
    assert await authenticator.authenticate("") is None
