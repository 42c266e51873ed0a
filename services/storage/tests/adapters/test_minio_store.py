"""Presigning is local computation once the region is known: no store is contacted."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from comfyserve.storage.adapters.minio_store import MinioObjectStore
from comfyserve.storage.settings import Settings


def settings(**changes) -> Settings:
    values = {
        "database_url": "postgresql://u:p@db/x",
        "s3_endpoint": "s3.internal:9000",
        "s3_access_key": "access",
        "s3_secret_key": "secret",
        "s3_bucket": "files",
        "s3_region": "eu-west-1",
    }
    values.update(changes)
    return Settings.model_validate(values)


async def test_urls_are_signed_for_the_public_endpoint() -> None:
    store = MinioObjectStore.from_settings(
        settings(s3_public_endpoint="files.example.com")
    )
    url = urlsplit(await store.presign_put("inputs/t/1/cat.png", timedelta(seconds=60)))
    assert url.netloc == "files.example.com"
    assert url.path == "/files/inputs/t/1/cat.png"
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["60"]
    assert "eu-west-1" in query["X-Amz-Credential"][0]


async def test_urls_use_the_endpoint_when_no_public_one_is_set() -> None:
    store = MinioObjectStore.from_settings(settings())
    url = await store.presign_get(
        "outputs/t/j/9/0-out.png",
        timedelta(seconds=120),
        content_type="image/png",
        disposition='attachment; filename="out.png"',
    )
    parts = urlsplit(url)
    assert parts.netloc == "s3.internal:9000"
    query = parse_qs(parts.query)
    assert query["response-content-type"] == ["image/png"]
    assert query["response-content-disposition"] == ['attachment; filename="out.png"']
