"""What a valid e-mail, password and tenant name are."""

from __future__ import annotations

import re

from comfyserve.auth.errors import InvalidArgumentError
from comfyserve.auth.tenants.models import MAX_NAME_CHARS

MIN_PASSWORD_CHARS = 10
# Bounds the work one login can ask of argon2.
MAX_PASSWORD_CHARS = 256
MAX_EMAIL_CHARS = 254
_MAX_LOCAL_PART_CHARS = 64
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def normalise_email(value: str, field: str = "email") -> str:
    """Trimmed and lower-case, so one mailbox is one account whatever its
    spelling; refused when it cannot be an address."""
    email = value.strip().lower()
    if not email:
        raise InvalidArgumentError(field, "required")
    if (
        len(email) > MAX_EMAIL_CHARS
        or not _EMAIL.fullmatch(email)
        or len(email.split("@", 1)[0]) > _MAX_LOCAL_PART_CHARS
        or not email.isprintable()
    ):
        raise InvalidArgumentError(field, "not an e-mail address")
    return email


def check_password(password: str, field: str = "password") -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidArgumentError(
            field, f"at least {MIN_PASSWORD_CHARS} characters are required"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidArgumentError(field, f"at most {MAX_PASSWORD_CHARS} characters")
    return password


def tenant_name(value: str, email: str) -> str:
    """The name asked for, trimmed; the e-mail when none was."""
    name = value.strip() or email
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidArgumentError(
            "tenant_name", f"at most {MAX_NAME_CHARS} printable characters"
        )
    return name
