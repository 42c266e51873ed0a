"""Settings: the placeholder secret refused outside development, service keys
checked without ever showing a secret."""

import pytest
from pydantic import SecretStr, ValidationError

from comfyserve.auth.settings import PLACEHOLDER_SECRET, Environment, Settings

SECRET = "s" * 32


def test_the_defaults():
    settings = Settings(environment=Environment.DEVELOPMENT)
    assert (settings.grpc_port, settings.metrics_port) == (50053, 9105)
    assert (settings.issuer, settings.audience) == ("comfyserve-auth", "comfyserve")
    assert (settings.access_token_minutes, settings.refresh_token_days) == (15, 30)
    assert settings.schema_ == "auth"
    assert settings.service_credentials == {}


def test_the_placeholder_secret_serves_development_only():
    Settings(environment=Environment.DEVELOPMENT)
    for secret in (PLACEHOLDER_SECRET, "too short"):
        with pytest.raises(ValidationError, match="AUTH_KEY_ENCRYPTION_SECRET"):
            Settings(key_encryption_secret=SecretStr(secret))
    Settings(key_encryption_secret=SecretStr(SECRET))


def test_settings_come_from_auth_variables(monkeypatch):
    monkeypatch.setenv("AUTH_KEY_ENCRYPTION_SECRET", SECRET)
    monkeypatch.setenv("AUTH_SCHEMA", "auth_elsewhere")
    monkeypatch.setenv("AUTH_SERVICE_KEYS", f"gateway=csk_{'g' * 22}")
    settings = Settings()
    assert settings.schema_ == "auth_elsewhere"
    assert settings.service_credentials == {"gateway": f"csk_{'g' * 22}"}


def test_service_keys_are_name_and_secret_pairs():
    settings = Settings(
        environment=Environment.DEVELOPMENT,
        service_keys=SecretStr(f" gateway = csk_{'a' * 22} ,executor=csk_{'b' * 30},"),
    )
    assert settings.service_credentials == {
        "gateway": f"csk_{'a' * 22}",
        "executor": f"csk_{'b' * 30}",
    }


@pytest.mark.parametrize(
    "listed",
    [
        "gateway",
        f"Gate Way=csk_{'a' * 22}",
        "gateway=not-a-key-at-all-but-long-enough",
        "gateway=csk_short",
        f"gateway=csk_{'a' * 22},gateway=csk_{'b' * 22}",
    ],
)
def test_malformed_service_keys_are_refused_without_the_secret(listed):
    with pytest.raises(ValidationError) as refused:
        Settings(environment=Environment.DEVELOPMENT, service_keys=SecretStr(listed))
    shown = str(refused.value)
    for secret in ("csk_short", "a" * 22, "b" * 22, "not-a-key"):
        assert secret not in shown


def test_the_schema_must_be_a_plain_identifier():
    with pytest.raises(ValidationError):
        Settings(environment=Environment.DEVELOPMENT, schema_='auth"; drop')
