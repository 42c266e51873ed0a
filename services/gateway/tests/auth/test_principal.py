import hashlib

import pytest
from pydantic import SecretStr

from comfyserve.contracts.scopes import ALL_SCOPES, SERVICE_SCOPE
from comfyserve.gateway.auth.principal import (
    Authenticator,
    BootstrapKeys,
    is_bootstrap,
    tenant_id_for_key,
)
from comfyserve.runtime.auth import Principal, PrincipalKind, Unauthenticated


class Verifier:
    """The auth service's verdict: one known credential, and a service key."""

    def __init__(self):
        self.asked = []

    async def verify(self, credential):
        self.asked.append(credential)
        if credential == "csk_user":
            return Principal(
                kind=PrincipalKind.API_KEY,
                subject="key:1",
                tenant_id="t-1",
                scopes=frozenset({"workflows:read"}),
            )
        if credential == "csk_service":
            return Principal(
                kind=PrincipalKind.SERVICE,
                subject="service:executor",
                tenant_id="",
                scopes=frozenset({SERVICE_SCOPE}),
            )
        raise Unauthenticated("unknown")


def test_tenant_id_is_the_first_16_hex_digits_of_the_keys_sha256():
    assert tenant_id_for_key("abc") == hashlib.sha256(b"abc").hexdigest()[:16]


def test_each_bootstrap_key_is_its_own_tenant_with_every_scope():
    keys = BootstrapKeys([SecretStr("one"), SecretStr("two")])

    first = keys.find("one")
    second = keys.find("two")

    assert first is not None
    assert second is not None
    assert first.tenant_id == tenant_id_for_key("one")
    assert second.tenant_id == tenant_id_for_key("two")
    assert first.scopes == ALL_SCOPES
    assert is_bootstrap(first)
    assert "one" not in first.subject


def test_unknown_and_prefix_keys_are_not_bootstrap_keys():
    keys = BootstrapKeys([SecretStr("secret-key")])

    assert keys.find("secret") is None
    assert keys.find("secret-key-") is None
    assert keys.find("") is None


async def test_bootstrap_keys_are_checked_here_and_the_rest_by_the_auth_service():
    verifier = Verifier()
    authenticator = Authenticator(BootstrapKeys([SecretStr("boot")]), verifier)

    bootstrap = await authenticator.authenticate("boot")
    issued = await authenticator.authenticate("csk_user")

    assert bootstrap.tenant_id == tenant_id_for_key("boot")
    assert issued.tenant_id == "t-1"
    assert not is_bootstrap(issued)
    assert verifier.asked == ["csk_user"]


@pytest.mark.parametrize("credential", ["csk_unknown", "csk_service"])
async def test_unknown_credentials_and_our_services_keys_are_refused(credential):
    authenticator = Authenticator(BootstrapKeys([]), Verifier())

    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(credential)
