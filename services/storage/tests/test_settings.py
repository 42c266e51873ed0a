import pytest
from pydantic import ValidationError

from comfyserve.contracts.topics import FINISHED
from comfyserve.storage.settings import DEFAULT_CONTENT_TYPES, Settings

REQUIRED = {
    "STORAGE_DATABASE_URL": "postgresql://u:p@db:5432/comfyserve",
    "STORAGE_S3_ENDPOINT": "s3:9000",
    "STORAGE_S3_ACCESS_KEY": "access",
    "STORAGE_S3_SECRET_KEY": "s3cr3t-value",
    "STORAGE_S3_BUCKET": "files",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.schema_name == "storage"
    assert settings.grpc_port == 50052
    assert settings.metrics_port == 9103
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.allowed_content_types == DEFAULT_CONTENT_TYPES
    assert settings.presign_endpoint == "s3:9000"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.consumer_group == "storage"
    assert settings.finished_topic == FINISHED
    assert "s3cr3t-value" not in repr(settings)
    # Callers' credentials are checked unless a test turns it off.
    assert settings.require_credentials is True
    assert settings.auth_grpc_target == "127.0.0.1:50053"


def test_environment_overrides(env: pytest.MonkeyPatch) -> None:
    env.setenv("STORAGE_SCHEMA", "storage_blue")
    env.setenv("STORAGE_ALLOWED_CONTENT_TYPES", "image/png, Text/Plain")
    env.setenv("STORAGE_S3_PUBLIC_ENDPOINT", "files.example.com")
    env.setenv("STORAGE_S3_SECURE", "true")
    env.setenv("STORAGE_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka-1:9092")
    env.setenv("STORAGE_CONSUMER_GROUP", "storage-blue")
    env.setenv("STORAGE_AUTH_GRPC_TARGET", "auth:50053")
    env.setenv("STORAGE_REQUIRE_CREDENTIALS", "false")
    settings = Settings()
    assert settings.schema_name == "storage_blue"
    assert settings.allowed_content_types == {"image/png", "text/plain"}
    assert settings.presign_endpoint == "files.example.com"
    assert settings.s3_secure is True
    assert settings.kafka_bootstrap_servers == "kafka-0:9092,kafka-1:9092"
    assert settings.consumer_group == "storage-blue"
    assert settings.auth_grpc_target == "auth:50053"
    assert settings.require_credentials is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STORAGE_SCHEMA", 'storage"; drop'),
        ("STORAGE_DATABASE_URL", "mysql://db/x"),
        ("STORAGE_DOWNLOAD_URL_TTL_SECONDS", "3601"),
    ],
)
def test_invalid_values_are_refused(
    env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
