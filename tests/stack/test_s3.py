"""The S3 server answers through the minio client; presigned URLs work over HTTP."""

from __future__ import annotations

import io
from datetime import timedelta

import httpx
import pytest
from minio import Minio

pytestmark = pytest.mark.integration


def test_put_then_fetch_presigned_url(stack: dict[str, str], unique: str) -> None:
    client = Minio(
        stack["S3_ENDPOINT"],
        access_key=stack["S3_ACCESS_KEY"],
        secret_key=stack["S3_SECRET_KEY"],
        secure=stack["S3_SECURE"] == "true",
        region=stack["S3_REGION"],
    )
    bucket = stack["S3_BUCKET"]
    key = f"tests/{unique}/hello.txt"
    body = f"hello {unique}".encode()
    client.put_object(
        bucket, key, io.BytesIO(body), len(body), content_type="text/plain"
    )
    try:
        url = client.presigned_get_object(bucket, key, expires=timedelta(minutes=1))
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.content == body

        tampered = url.replace(unique, unique[::-1])
        assert httpx.get(tampered).status_code in {403, 404}
    finally:
        client.remove_object(bucket, key)
