"""The minio adapter against the stack's S3 server."""

import io

import pytest

pytestmark = pytest.mark.integration


async def test_list_keys_returns_every_key_under_the_prefix_only(
    real_store, unique
) -> None:
    keys = [
        f"outputs/t{unique}/job/1/9/0-a.png",
        f"outputs/t{unique}/job/2/9/0-a.png",
        f"outputs/t{unique}/jobx/1/9/0-a.png",
    ]
    client = real_store._client
    for key in keys:
        client.put_object(real_store.bucket, key, io.BytesIO(b"x"), 1)
    try:
        listed = await real_store.list_keys(f"outputs/t{unique}/job/")
        assert sorted(listed) == keys[:2]
        assert await real_store.list_keys(f"outputs/t{unique}/none/") == []
    finally:
        for key in keys:
            await real_store.delete(key)
