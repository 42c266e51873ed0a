import pytest
from pydantic import ValidationError

from comfyserve.contracts.limits import GRPC_MAX_MESSAGE_BYTES, MAX_WORKFLOW_BYTES
from comfyserve.gateway.settings import Settings


def test_defaults(monkeypatch):
    for name in ("GATEWAY_API_KEYS", "GATEWAY_CORS_ORIGINS", "GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    # The largest graph and its envelope (metadata, priority, webhook URL).
    assert settings.max_body_bytes == MAX_WORKFLOW_BYTES + 64 * 1024
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.max_header_bytes == 64 * 1024
    assert settings.sse_keepalive_seconds == 10
    assert settings.cors_origins == []
    assert settings.public_base_url is None


def test_keys_and_origins_are_comma_separated(monkeypatch):
    monkeypatch.setenv("GATEWAY_API_KEYS", " first , second,")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://a.example,https://b.example")

    settings = Settings()

    assert [key.get_secret_value() for key in settings.api_keys] == ["first", "second"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert "first" not in repr(settings)


def test_the_body_limit_stays_within_one_grpc_message():
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings(max_body_bytes=GRPC_MAX_MESSAGE_BYTES)


def test_cors_origins_must_be_explicit():
    with pytest.raises(ValidationError, match="explicitly"):
        Settings(cors_origins=["https://a.example", "*"])


def test_rate_limits_and_redis_timeout_have_defaults(monkeypatch):
    monkeypatch.setenv("GATEWAY_RATE_SUBMIT_BURST", "7")
    monkeypatch.setenv("GATEWAY_REDIS_TIMEOUT_SECONDS", "0.25")

    settings = Settings()

    assert (settings.rate_submit_per_minute, settings.rate_submit_burst) == (120, 7)
    assert (settings.rate_read_per_minute, settings.rate_read_burst) == (1200, 200)
    assert settings.redis_timeout_seconds == 0.25
    with pytest.raises(ValidationError):
        Settings(rate_auth_burst=0)
