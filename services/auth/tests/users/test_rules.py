"""What a valid e-mail, password and tenant name are."""

import pytest

from comfyserve.auth.errors import InvalidArgumentError
from comfyserve.auth.users.rules import check_password, normalise_email, tenant_name


def test_emails_are_trimmed_and_lower_case():
    assert normalise_email("  Alice@Example.COM ") == "alice@example.com"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "a b@c.de",
        "a@@b.de",
        "a@b..de",
        "x" * 65 + "@example.com",
        "a\u0000b@c.de",
    ],
)
def test_what_cannot_be_an_address_is_refused(value):
    with pytest.raises(InvalidArgumentError) as refused:
        normalise_email(value)
    assert refused.value.field == "email"


def test_passwords_are_ten_to_256_characters():
    assert check_password("p" * 10) == "p" * 10
    assert check_password("é" * 256) == "é" * 256
    for bad in ("p" * 9, "p" * 257):
        with pytest.raises(InvalidArgumentError):
            check_password(bad)


def test_a_tenant_is_named_as_asked_or_by_the_email():
    assert tenant_name("  Acme ", "a@b.de") == "Acme"
    assert tenant_name("", "a@b.de") == "a@b.de"
    with pytest.raises(InvalidArgumentError):
        tenant_name("x" * 101, "a@b.de")
