from comfyserve.gateway.settings import Settings


def test_defaults(monkeypatch):
    for name in ("GATEWAY_API_KEYS", "GATEWAY_CORS_ORIGINS", "GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.max_upload_bytes == 50 * 1024 * 1024
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
